//! Named scenarios and the resolution of a run's inputs into one `Plan`.
//!
//! A scenario only supplies defaults: any input given explicitly wins, so
//! `--scenario fanout --clients 10000 --rooms 100` is fanout's shape at ten times the size.
//! This module knows nothing of the command line: `cli` turns its flags into
//! [`LoadInputs`] and [`ConnectOptions`], and the scenario table into its choices.

use crate::attack::plan::{AttackKind, AttackPlan, FloodMode};
use crate::connect_options::ConnectOptions;
use crate::flag_check::positive;
use crate::layout::Layout;
use crate::target::{split_urls, Target};
use serde::Serialize;
use std::str::FromStr;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ScenarioName {
    Fanout,
    Pairs,
    Bigroom,
    Saturate,
    Idle,
    Burst,
    Flood,
    Flooder,
}

impl ScenarioName {
    /// Every scenario, in the order `--help` lists them.
    pub const ALL: [ScenarioName; 8] = [
        ScenarioName::Fanout,
        ScenarioName::Pairs,
        ScenarioName::Bigroom,
        ScenarioName::Saturate,
        ScenarioName::Idle,
        ScenarioName::Burst,
        ScenarioName::Flood,
        ScenarioName::Flooder,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ScenarioName::Fanout => "fanout",
            ScenarioName::Pairs => "pairs",
            ScenarioName::Bigroom => "bigroom",
            ScenarioName::Saturate => "saturate",
            ScenarioName::Idle => "idle",
            ScenarioName::Burst => "burst",
            ScenarioName::Flood => "flood",
            ScenarioName::Flooder => "flooder",
        }
    }

    /// The attack a scenario makes, if it is one.
    pub fn attack(self) -> Option<AttackKind> {
        match self {
            ScenarioName::Burst => Some(AttackKind::Burst),
            ScenarioName::Flood => Some(AttackKind::Flood),
            ScenarioName::Flooder => Some(AttackKind::Flooder),
            _ => None,
        }
    }

    /// One line on what the scenario does, for `--help`.
    pub fn summary(self) -> &'static str {
        match self {
            ScenarioName::Fanout => {
                "1,000 clients in 10 rooms of 100, every client sending 1 msg/s of 64 bytes"
            }
            ScenarioName::Pairs => "2,000 clients in 1,000 rooms of two, each sending 10 msg/s",
            ScenarioName::Bigroom => "5,000 clients in one room, one sender at 20 msg/s",
            ScenarioName::Saturate => {
                "fanout's layout with the rate doubled until p99 passes 100 ms or anything is \
                 lost (halved instead while the start rate fails), then bisected; reports the \
                 highest sustained deliveries per second"
            }
            ScenarioName::Idle => {
                "19,500 idle connections in 100 rooms; the server's memory per connection"
            }
            ScenarioName::Burst => {
                "attack: 3 of 50 members of one room each write 2,000 messages of 4 KB as fast \
                 as the socket takes them; the readers must lose nothing (closes are listed)"
            }
            ScenarioName::Flood => {
                "attack: 100 members of one room at 1 msg/s, measured without and then with \
                 an outsider flooding (--flood-mode ping, chat in its own room, or echo)"
            }
            ScenarioName::Flooder => {
                "attack: 100 members of one room at 1 msg/s, measured without and then with \
                 a member flooding the room with chat messages (its errors and close are \
                 expected)"
            }
        }
    }

    fn defaults(self) -> Defaults {
        let base = Defaults::plain();
        match self {
            ScenarioName::Fanout => Defaults {
                clients: 1000,
                rooms: 10,
                ..base
            },
            ScenarioName::Pairs => Defaults {
                clients: 2000,
                rooms: 1000,
                rate: 10.0,
                ..base
            },
            ScenarioName::Bigroom => Defaults {
                clients: 5000,
                rooms: 1,
                senders_per_room: Some(1),
                rate: 20.0,
                ..base
            },
            ScenarioName::Saturate => Defaults {
                clients: 1000,
                rooms: 10,
                duration: 5.0,
                warmup: 1.0,
                drain: 2.0,
                mode: Mode::Saturate,
                ..base
            },
            ScenarioName::Idle => Defaults {
                clients: 19_500,
                rooms: 100,
                mode: Mode::Idle,
                ..base
            },
            ScenarioName::Burst => Defaults {
                clients: 50,
                rooms: 1,
                senders_per_room: Some(3),
                payload: 4096,
                // The longest the burst may take to write; the window ends when it is out.
                duration: 30.0,
                warmup: 0.0,
                drain: 10.0,
                mode: Mode::Attack,
                ..base
            },
            ScenarioName::Flood | ScenarioName::Flooder => Defaults {
                clients: 100,
                rooms: 1,
                duration: 5.0,
                warmup: 1.0,
                mode: Mode::Attack,
                ..base
            },
        }
    }
}

impl FromStr for ScenarioName {
    type Err = String;

    fn from_str(s: &str) -> Result<ScenarioName, String> {
        ScenarioName::ALL
            .into_iter()
            .find(|n| n.name() == s)
            .ok_or_else(|| format!("no scenario named {s:?}"))
    }
}

/// What the caller asks of a load run (load, saturate or idle), before the scenario's
/// defaults fill the gaps: `None` means "the scenario's, else the plain default".
#[derive(Clone, Debug, PartialEq)]
pub struct LoadInputs {
    pub scenario: Option<ScenarioName>,
    pub clients: Option<usize>,
    pub rooms: Option<usize>,
    pub senders_per_room: Option<usize>,
    pub rate: Option<f64>,
    pub payload: Option<usize>,
    pub duration: Option<f64>,
    pub warmup: Option<f64>,
    pub drain: Option<f64>,
    pub hold: Option<f64>,
    pub settle: f64,
    pub p99_limit_ms: f64,
    pub max_rate: f64,
    pub refine_steps: u32,
    /// Burst: messages per burst sender.
    pub burst_messages: u32,
    /// Flood and flooder: what the flooder writes (flood: ping, flooder: chat).
    pub flood_mode: Option<FloodMode>,
    pub echo_path: String,
}

impl Default for LoadInputs {
    /// The command line's defaults.
    fn default() -> LoadInputs {
        LoadInputs {
            scenario: None,
            clients: None,
            rooms: None,
            senders_per_room: None,
            rate: None,
            payload: None,
            duration: None,
            warmup: None,
            drain: None,
            hold: None,
            settle: 2.0,
            p99_limit_ms: 100.0,
            max_rate: 1024.0,
            refine_steps: 4,
            burst_messages: 2000,
            flood_mode: None,
            echo_path: "/ws/echo/".into(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// One measured step at a fixed rate.
    Load,
    /// Rate search.
    Saturate,
    /// Connections only.
    Idle,
    /// An attack scenario (burst, flood, flooder): see `attack`.
    Attack,
}

struct Defaults {
    payload: usize,
    clients: usize,
    rooms: usize,
    senders_per_room: Option<usize>,
    rate: f64,
    duration: f64,
    warmup: f64,
    drain: f64,
    mode: Mode,
}

impl Defaults {
    /// Without a scenario: a small smoke run.
    fn plain() -> Defaults {
        Defaults {
            payload: 64,
            clients: 100,
            rooms: 10,
            senders_per_room: None,
            rate: 1.0,
            duration: 10.0,
            warmup: 2.0,
            drain: 3.0,
            mode: Mode::Load,
        }
    }
}

/// Everything a run needs, inputs and scenario merged and checked.
#[derive(Clone, Debug)]
pub struct Plan {
    pub scenario: Option<ScenarioName>,
    pub mode: Mode,
    /// The node URLs joined with commas (as shown in the report).
    pub url: String,
    /// One target per node, in the order given; client `i` goes to
    /// `targets[layout.node_of(i, targets.len())]`.
    pub targets: Vec<Target>,
    pub layout: Layout,
    /// Messages per second per sender (saturate: the starting rate).
    pub rate: f64,
    pub payload: usize,
    pub duration_s: f64,
    pub warmup_s: f64,
    pub drain_s: f64,
    /// How every client connects (shared with the soak mode).
    pub connect: ConnectOptions,
    pub server_pids: Vec<u32>,
    pub hold_s: f64,
    pub settle_s: f64,
    pub p99_limit_ms: f64,
    pub max_rate: f64,
    pub refine_steps: u32,
    /// The attack scenarios' settings (`mode` is `Attack`).
    pub attack: Option<AttackPlan>,
    pub progress: bool,
}

impl Plan {
    /// Merges `inputs` over the scenario's defaults. `idle` forces idle mode. `urls` are
    /// the URL arguments as given (each may be a comma-separated list of nodes).
    pub fn resolve(
        urls: &[String],
        inputs: &LoadInputs,
        connect: &ConnectOptions,
        idle: bool,
        server_pids: &[u32],
        progress: bool,
    ) -> Result<Plan, String> {
        let d = match (inputs.scenario, idle) {
            (Some(s), _) => s.defaults(),
            (None, true) => ScenarioName::Idle.defaults(),
            (None, false) => Defaults::plain(),
        };
        let mode = if idle { Mode::Idle } else { d.mode };
        if idle && inputs.scenario.is_some_and(|s| s != ScenarioName::Idle) {
            return Err(
                "idle mode cannot run a traffic scenario; drop --scenario or use --scenario idle"
                    .into(),
            );
        }
        let layout = plan_layout(inputs, &d, mode)?;
        let urls = split_urls(urls);
        let connect = connect.checked()?;
        let targets = Target::parse_all(&urls, &connect)?;
        let payload = inputs.payload.unwrap_or(d.payload);
        if payload > 16 << 20 {
            return Err("--payload is limited to 16 MiB".into());
        }
        Ok(Plan {
            scenario: inputs.scenario.or(idle.then_some(ScenarioName::Idle)),
            mode,
            url: urls.join(","),
            targets,
            layout,
            rate: positive("rate", inputs.rate.unwrap_or(d.rate), mode == Mode::Idle)?,
            payload,
            duration_s: positive("duration", inputs.duration.unwrap_or(d.duration), false)?,
            warmup_s: positive("warmup", inputs.warmup.unwrap_or(d.warmup), true)?,
            drain_s: positive("drain", inputs.drain.unwrap_or(d.drain), true)?,
            connect,
            server_pids: server_pids.to_vec(),
            hold_s: positive("hold", inputs.hold.unwrap_or(10.0), true)?,
            settle_s: positive("settle", inputs.settle, true)?,
            p99_limit_ms: positive("p99-limit-ms", inputs.p99_limit_ms, false)?,
            max_rate: positive("max-rate", inputs.max_rate, false)?,
            refine_steps: inputs.refine_steps,
            attack: attack_plan(inputs)?,
            progress,
        })
    }
}

/// The attack's settings, for an attack scenario.
fn attack_plan(inputs: &LoadInputs) -> Result<Option<AttackPlan>, String> {
    let Some(kind) = inputs.scenario.and_then(ScenarioName::attack) else {
        return Ok(None);
    };
    if kind == AttackKind::Burst && inputs.burst_messages == 0 {
        return Err("--burst-messages must be at least 1".into());
    }
    let flood_mode = inputs.flood_mode.unwrap_or(match kind {
        AttackKind::Flooder => FloodMode::Chat,
        _ => FloodMode::Ping,
    });
    if kind == AttackKind::Flooder && flood_mode != FloodMode::Chat {
        return Err("the flooder floods its own room with chat messages: --flood-mode chat".into());
    }
    if !inputs.echo_path.starts_with('/') {
        return Err(format!(
            "--echo-path must start with / (got {:?})",
            inputs.echo_path
        ));
    }
    Ok(Some(AttackPlan {
        kind,
        flood_mode,
        burst_messages: inputs.burst_messages,
        echo_path: inputs.echo_path.clone(),
    }))
}

/// The clients, rooms and senders of a run: the inputs over the scenario's defaults.
fn plan_layout(inputs: &LoadInputs, d: &Defaults, mode: Mode) -> Result<Layout, String> {
    // Idle clients send nothing, so they need no per-sender receive state.
    let senders = if mode == Mode::Idle {
        Some(0)
    } else {
        inputs.senders_per_room.or(d.senders_per_room)
    };
    let clients = inputs.clients.unwrap_or(d.clients);
    // A scenario's room count shrinks with a smaller --clients; an explicit --rooms
    // larger than --clients is refused by Layout::new.
    let rooms = inputs.rooms.unwrap_or(d.rooms.min(clients.max(1)));
    Layout::new(clients, rooms, senders)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Cli;
    use clap::Parser;

    fn plan(args: &[&str]) -> Result<Plan, String> {
        let mut argv = vec!["loadtest", "ws://127.0.0.1:9/ws/chat/"];
        argv.extend_from_slice(args);
        let cli = Cli::try_parse_from(argv).map_err(|e| e.to_string())?;
        cli.run.plan(false, false)
    }

    #[test]
    fn scenarios_supply_defaults_and_flags_win() {
        let p = plan(&["--scenario", "bigroom"]).unwrap();
        assert_eq!(
            (
                p.layout.clients,
                p.layout.rooms,
                p.layout.total_senders(),
                p.rate
            ),
            (5000, 1, 1, 20.0)
        );
        let p = plan(&[
            "--scenario",
            "fanout",
            "--clients",
            "10000",
            "--rooms",
            "100",
        ])
        .unwrap();
        assert_eq!(
            (p.layout.clients, p.layout.rooms, p.layout.total_senders()),
            (10000, 100, 10000)
        );
        let p = plan(&["--scenario", "pairs"]).unwrap();
        assert_eq!(
            (p.layout.room_size(0), p.rate, p.mode),
            (2, 10.0, Mode::Load)
        );
        let p = plan(&["--scenario", "saturate"]).unwrap();
        assert_eq!(
            (p.mode, p.duration_s, p.warmup_s),
            (Mode::Saturate, 5.0, 1.0)
        );
    }

    #[test]
    fn idle_needs_no_senders_and_fits_rooms_to_clients() {
        let p = plan(&["--idle", "--clients", "20"]).unwrap();
        assert_eq!(
            (p.mode, p.layout.rooms, p.layout.total_senders()),
            (Mode::Idle, 20, 0)
        );
        let p = plan(&["--scenario", "idle"]).unwrap();
        assert_eq!((p.layout.clients, p.layout.rooms), (19_500, 100));
        assert!(plan(&["--idle", "--scenario", "fanout"]).is_err());
    }

    #[test]
    fn bad_values_are_refused() {
        assert!(plan(&["--rate", "0"]).is_err());
        assert!(plan(&["--rate", "-1"]).is_err());
        assert!(plan(&["--duration", "0"]).is_err());
        assert!(plan(&["--clients", "5", "--rooms", "6"]).is_err());
        assert!(plan(&["--payload", "100000000"]).is_err());
        assert!(plan(&["--rate", "0.25"]).is_ok());
    }

    #[test]
    fn several_urls_as_arguments_or_comma_separated() {
        let p = plan(&["ws://127.0.0.1:10/ws/chat/,ws://127.0.0.1:11/ws/chat/"]).unwrap();
        assert_eq!(p.targets.len(), 3);
        assert_eq!(
            p.url,
            "ws://127.0.0.1:9/ws/chat/,ws://127.0.0.1:10/ws/chat/,ws://127.0.0.1:11/ws/chat/"
        );
        let p = plan(&["--server-pid", "1,2", "--server-pid", "3"]).unwrap();
        assert_eq!((p.targets.len(), p.server_pids.clone()), (1, vec![1, 2, 3]));
        // Flags may come before the extra URLs, too.
        let p = plan(&["--clients", "20", "ws://127.0.0.1:10/ws/chat/"]).unwrap();
        assert_eq!((p.targets.len(), p.layout.clients), (2, 20));
        assert!(plan(&["http://127.0.0.1:10/"]).is_err());
    }
}
