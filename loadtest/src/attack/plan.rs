//! What an attack scenario asks for: which attack, how the flooder floods, how big the
//! burst is. Plain data, resolved from the command line by `scenario`.

use serde::Serialize;
use std::str::FromStr;

/// The three attack scenarios.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AttackKind {
    /// A few members each write a burst of chat messages as fast as the socket takes them
    /// into a room of fast readers: the readers must lose nothing.
    Burst,
    /// An outsider floods (its own room, or the echo path) while a normal room is
    /// measured, without and then with it.
    Flood,
    /// A member of the measured room floods it with chat messages.
    Flooder,
}

/// What the flooding client writes, as fast as its socket takes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FloodMode {
    /// Empty ping frames (each costs the relay a pong).
    Ping,
    /// Stamped chat messages of `--payload` bytes.
    Chat,
    /// Empty text messages to the echo path (`--echo-path`, `/ws/echo/`).
    Echo,
}

impl FloodMode {
    pub const ALL: [FloodMode; 3] = [FloodMode::Ping, FloodMode::Chat, FloodMode::Echo];

    pub fn name(self) -> &'static str {
        match self {
            FloodMode::Ping => "ping",
            FloodMode::Chat => "chat",
            FloodMode::Echo => "echo",
        }
    }

    /// One line for `--help`.
    pub fn summary(self) -> &'static str {
        match self {
            FloodMode::Ping => "empty pings",
            FloodMode::Chat => "chat messages of --payload bytes",
            FloodMode::Echo => "empty text messages on the echo path (--echo-path)",
        }
    }
}

impl FromStr for FloodMode {
    type Err = String;

    fn from_str(s: &str) -> Result<FloodMode, String> {
        FloodMode::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| format!("no flood mode named {s:?}"))
    }
}

/// An attack scenario's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttackPlan {
    pub kind: AttackKind,
    /// Flood and flooder: what the flooder writes.
    pub flood_mode: FloodMode,
    /// Burst: chat messages each burst sender writes.
    pub burst_messages: u32,
    /// Flood in echo mode: the path the flooder connects to.
    pub echo_path: String,
}
