//! `loadtest compare`: one scenario against several servers in turn, side by side.
//!
//! Each server is started through the baselines' fixed interface,
//! `loadtest/baselines/<name>/run.sh PORT` (foreground; stops what it started on SIGTERM;
//! writes its server PIDs to `$PIDFILE` once listening), pinned with `taskset` to the
//! server CPUs while the harness pins itself to its own core. After the run the script is
//! sent SIGTERM, and SIGKILL after a grace period; only processes this command started
//! are ever signalled, by PID.

use crate::chart::{self, Panel};
use crate::cli::CompareArgs;
use crate::proc;
use crate::report::Report;
use crate::report_common::ms;
use crate::runner;
use crate::scenario::{LoadInputs, Plan, ScenarioName};
use crate::sys;
use serde::Serialize;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One entry of `--servers`: the label its row shows, the baseline script that starts
/// it and, for a prebuilt roomcast, the binary that script runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerSpec {
    pub label: String,
    /// The folder under the baselines holding `run.sh`.
    pub baseline: String,
    /// `ROOMCAST_BIN` for the `roomcast-bin` baseline.
    pub binary: Option<PathBuf>,
}

/// The baseline that runs a prebuilt roomcast binary named by `ROOMCAST_BIN`.
pub const PREBUILT_BASELINE: &str = "roomcast-bin";

impl ServerSpec {
    /// `NAME` (a baseline, shown as itself), `LABEL=NAME` (a baseline shown as LABEL) or
    /// `LABEL=PATH` (a prebuilt roomcast binary: any value with a `/` is a path).
    pub fn parse(entry: &str) -> Result<ServerSpec, String> {
        let entry = entry.trim();
        let (label, value) = match entry.split_once('=') {
            Some((l, v)) => (l.trim(), v.trim()),
            None => (entry, entry),
        };
        let label_ok = !label.is_empty()
            && label
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !label_ok {
            return Err(format!(
                "--servers entry {entry:?}: a label is letters, digits, '-', '_' or '.' \
                 (it names the log file)"
            ));
        }
        if value.is_empty() {
            return Err(format!("--servers entry {entry:?} names nothing after '='"));
        }
        Ok(if value.contains('/') {
            ServerSpec {
                label: label.into(),
                baseline: PREBUILT_BASELINE.into(),
                binary: Some(PathBuf::from(value)),
            }
        } else {
            ServerSpec {
                label: label.into(),
                baseline: value.into(),
                binary: None,
            }
        })
    }

    /// Every entry, labels unique (each row and log file is named by its label).
    pub fn parse_all(entries: &[String]) -> Result<Vec<ServerSpec>, String> {
        let specs = entries
            .iter()
            .filter(|e| !e.trim().is_empty())
            .map(|e| ServerSpec::parse(e))
            .collect::<Result<Vec<_>, _>>()?;
        for (i, s) in specs.iter().enumerate() {
            if specs[..i].iter().any(|t| t.label == s.label) {
                return Err(format!(
                    "--servers names {:?} twice; give each a label, e.g. before=PATH,after=PATH",
                    s.label
                ));
            }
        }
        if specs.is_empty() {
            return Err("--servers names no server".into());
        }
        Ok(specs)
    }
}

/// One server's row.
#[derive(Debug, Serialize)]
pub struct Entry {
    /// The label given in `--servers` (the baseline's name when none was).
    pub name: String,
    /// The baseline that started it.
    pub baseline: String,
    /// The prebuilt roomcast binary it ran (`LABEL=PATH` entries).
    pub binary: Option<PathBuf>,
    /// "ok", "failed" (the run found problems), or why it did not run.
    pub status: String,
    pub ok: bool,
    pub startup_s: Option<f64>,
    pub pids: Vec<u32>,
    pub log: Option<PathBuf>,
    pub report: Option<Report>,
}

#[derive(Debug, Serialize)]
pub struct Comparison {
    pub scenario: ScenarioName,
    pub port: u16,
    pub server_cpus: String,
    pub harness_cpu: Option<usize>,
    pub servers: Vec<Entry>,
}

/// Finds the baselines folder: the flag, else `loadtest/baselines` or `baselines` below
/// the working directory, else the one beside this crate's sources.
fn baselines_dir(flag: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(p) = flag {
        return if p.is_dir() {
            Ok(p.to_path_buf())
        } else {
            Err(format!("{} is not a directory", p.display()))
        };
    }
    let candidates = [
        PathBuf::from("loadtest/baselines"),
        PathBuf::from("baselines"),
        Path::new(env!("CARGO_MANIFEST_DIR")).join("baselines"),
    ];
    candidates
        .into_iter()
        .find(|p| p.is_dir())
        .ok_or_else(|| "no loadtest/baselines folder found; pass --baselines DIR".into())
}

fn have_taskset() -> bool {
    Command::new("taskset")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn read_pidfile(path: &Path) -> Vec<u32> {
    fs::read_to_string(path)
        .map(|s| {
            s.lines()
                .filter_map(|l| l.trim().parse().ok())
                .filter(|&p| p > 0)
                .collect()
        })
        .unwrap_or_default()
}

fn log_tail(path: &Path, lines: usize) -> String {
    let Ok(f) = File::open(path) else {
        return String::new();
    };
    let all: Vec<String> = BufReader::new(f).lines().map_while(Result::ok).collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn signal(pid: u32, sig: libc::c_int) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: kill has no memory preconditions; pid is one this command started.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

/// A started baseline server.
struct Started {
    child: Child,
    pidfile: PathBuf,
    pids: Vec<u32>,
}

impl Started {
    /// SIGTERM to the script, SIGKILL after `grace`; then the same for any server PID it
    /// reported that outlived it, if that process is still in our process group (it was
    /// started under us, not a recycled PID).
    fn stop(mut self, grace: Duration) {
        let deadline = Instant::now() + grace;
        signal(self.child.id(), libc::SIGTERM);
        while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(100));
        }
        if matches!(self.child.try_wait(), Ok(None)) {
            eprintln!(
                "loadtest: server script {} ignored SIGTERM; killing it",
                self.child.id()
            );
            signal(self.child.id(), libc::SIGKILL);
        }
        let _ = self.child.wait();
        // SAFETY: getpgrp has no preconditions.
        let ours = unsafe { libc::getpgrp() } as u32;
        let mut pids = self.pids.clone();
        pids.extend(read_pidfile(&self.pidfile));
        pids.sort_unstable();
        pids.dedup();
        let leftovers: Vec<u32> = pids
            .into_iter()
            .filter(|&p| proc::alive(p) && proc::pgrp(p) == Some(ours))
            .collect();
        let deadline = Instant::now() + grace.min(Duration::from_secs(5));
        for &p in &leftovers {
            signal(p, libc::SIGTERM);
        }
        while Instant::now() < deadline && leftovers.iter().any(|&p| proc::alive(p)) {
            std::thread::sleep(Duration::from_millis(100));
        }
        for &p in &leftovers {
            if proc::alive(p) && proc::pgrp(p) == Some(ours) {
                eprintln!("loadtest: server process {p} outlived its script; killing it");
                signal(p, libc::SIGKILL);
            }
        }
        let _ = fs::remove_file(&self.pidfile);
    }
}

/// Starts `name`, waits for its port and PIDs. On failure the server is already stopped.
fn start(
    name: &str,
    script: &Path,
    env: &[(&str, OsString)],
    args: &CompareArgs,
    log: &Path,
    taskset: bool,
) -> Result<(Started, f64), String> {
    let t0 = Instant::now();
    let mut started = spawn(name, script, env, args, log, taskset)?;
    if let Err(why) = wait_listening(&mut started, args, t0) {
        started.stop(Duration::from_secs_f64(args.stop_timeout));
        return Err(format!("{why}; log tail:\n{}", log_tail(log, 15)));
    }
    let startup_s = t0.elapsed().as_secs_f64();
    started.pids = wait_pids(name, &mut started);
    Ok((started, startup_s))
}

/// Starts `script PORT` (under taskset when there is one) with `PIDFILE` and `env` set
/// and its output going to `log`.
fn spawn(
    name: &str,
    script: &Path,
    env: &[(&str, OsString)],
    args: &CompareArgs,
    log: &Path,
    taskset: bool,
) -> Result<Started, String> {
    let pidfile = std::env::temp_dir().join(format!(
        "loadtest-compare-{}-{name}.pids",
        std::process::id()
    ));
    let _ = fs::remove_file(&pidfile);
    let out = File::create(log).map_err(|e| format!("cannot create {}: {e}", log.display()))?;
    let err = out.try_clone().map_err(|e| e.to_string())?;
    let mut cmd = if taskset {
        let mut c = Command::new("taskset");
        c.args(["-c", &args.server_cpus, "bash"]);
        c
    } else {
        Command::new("bash")
    };
    cmd.arg(script)
        .arg(args.port.to_string())
        .env("PIDFILE", &pidfile)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
    let child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", script.display()))?;
    Ok(Started {
        child,
        pidfile,
        pids: Vec::new(),
    })
}

/// Waits until the port listens, at most `--ready-timeout` from `t0`; `Err` says why not.
fn wait_listening(started: &mut Started, args: &CompareArgs, t0: Instant) -> Result<(), String> {
    let ready_by = t0 + Duration::from_secs_f64(args.ready_timeout);
    loop {
        if let Ok(Some(status)) = started.child.try_wait() {
            return Err(format!("run.sh exited before listening ({status})"));
        }
        if sys::interrupted() {
            return Err("interrupted".into());
        }
        if proc::port_listening(args.port) {
            return Ok(());
        }
        if Instant::now() > ready_by {
            return Err(format!(
                "not accepting on port {} after {} s",
                args.port, args.ready_timeout
            ));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The server PIDs from `PIDFILE`; without one after 30 s, every process under the
/// script instead.
fn wait_pids(name: &str, started: &mut Started) -> Vec<u32> {
    // The script writes PIDFILE once listening; give it a moment after the port opens.
    let pid_by = Instant::now() + Duration::from_secs(30);
    loop {
        let pids: Vec<u32> = read_pidfile(&started.pidfile)
            .into_iter()
            .filter(|&p| proc::alive(p))
            .collect();
        if !pids.is_empty() {
            return pids;
        }
        if Instant::now() > pid_by || matches!(started.child.try_wait(), Ok(Some(_))) {
            let pids = proc::descendants(started.child.id());
            eprintln!(
                "loadtest: {name} wrote no PIDFILE; measuring all its processes instead: {pids:?}"
            );
            return pids;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Starts, measures and stops one server; its row.
fn run_one(
    spec: &ServerSpec,
    scenario: ScenarioName,
    args: &CompareArgs,
    dir: &Path,
    log_dir: &Path,
    taskset: bool,
) -> Entry {
    let name = spec.label.as_str();
    let mut entry = Entry {
        name: name.into(),
        baseline: spec.baseline.clone(),
        binary: spec.binary.clone(),
        status: String::new(),
        ok: false,
        startup_s: None,
        pids: Vec::new(),
        log: None,
        report: None,
    };
    let script = dir.join(&spec.baseline).join("run.sh");
    if let Err(why) = preflight(spec, &script, args.port) {
        entry.status = format!("not run: {why}");
        return entry;
    }
    let log = log_dir.join(format!("compare-{}-{name}.log", scenario.name()));
    entry.log = Some(log.clone());
    eprintln!(
        "loadtest: starting {name} ({}{}) on port {}",
        script.display(),
        spec.binary.as_ref().map_or(String::new(), |b| format!(
            " with ROOMCAST_BIN={}",
            b.display()
        )),
        args.port
    );
    let env = server_env(spec, args);
    let (started, startup_s) = match start(name, &script, &env, args, &log, taskset) {
        Ok(s) => s,
        Err(why) => {
            eprintln!("loadtest: {name}: {why}");
            entry.status = format!("not run: {}", why.lines().next().unwrap_or(""));
            return entry;
        }
    };
    entry.startup_s = Some(startup_s);
    entry.pids = started.pids.clone();
    eprintln!(
        "loadtest: {name} ready after {startup_s:.1} s, server PIDs {:?}",
        started.pids
    );
    let result = measure(scenario, args, &started.pids);
    eprintln!("loadtest: stopping {name}");
    started.stop(Duration::from_secs_f64(args.stop_timeout));
    let free_by = Instant::now() + Duration::from_secs(10);
    while proc::port_listening(args.port) && Instant::now() < free_by {
        std::thread::sleep(Duration::from_millis(200));
    }
    match result {
        Ok(report) => {
            entry.ok = report.ok;
            entry.status = if report.ok {
                "ok".into()
            } else {
                format!("failed: {}", report.failures.join("; "))
            };
            entry.report = Some(report);
        }
        Err(e) => entry.status = format!("not run: {e}"),
    }
    entry
}

/// Why a server cannot be started, before trying: no script, no binary, a busy port.
fn preflight(spec: &ServerSpec, script: &Path, port: u16) -> Result<(), String> {
    if !script.is_file() {
        return Err(format!("{} does not exist", script.display()));
    }
    if let Some(bin) = &spec.binary {
        if !bin.is_file() {
            return Err(format!("{} is not a file", bin.display()));
        }
    }
    if proc::port_listening(port) {
        return Err(format!("something already listens on port {port}"));
    }
    Ok(())
}

/// The environment a server's script gets besides `PIDFILE`: the binary of a prebuilt
/// roomcast, and the modes the run asks every server for (`DEFLATE=1` with `--deflate`,
/// `TLS_CERT` and `TLS_KEY` with `--tls`).
fn server_env(spec: &ServerSpec, args: &CompareArgs) -> Vec<(&'static str, OsString)> {
    let mut env = Vec::new();
    if args.connect.deflate || args.connect.deflate_send {
        env.push(("DEFLATE", "1".into()));
    }
    if let Some([cert, key]) = args.tls.as_deref() {
        for (name, path) in [("TLS_CERT", cert), ("TLS_KEY", key)] {
            let abs = std::path::absolute(path).unwrap_or_else(|_| path.clone());
            env.push((name, abs.into_os_string()));
        }
    }
    if let Some(bin) = &spec.binary {
        // The script may run from another directory: hand it an absolute path.
        let abs = std::path::absolute(bin).unwrap_or_else(|_| bin.clone());
        env.push(("ROOMCAST_BIN", abs.into_os_string()));
    }
    env
}

/// The scenario against the server listening on `--port`, measuring `pids`.
fn measure(scenario: ScenarioName, args: &CompareArgs, pids: &[u32]) -> Result<Report, String> {
    let scheme = if args.tls.is_some() { "wss" } else { "ws" };
    let url = format!("{scheme}://127.0.0.1:{}/ws/chat/", args.port);
    let inputs = LoadInputs {
        scenario: Some(scenario),
        ..args.load.inputs()
    };
    let plan = Plan::resolve(
        &[url],
        &inputs,
        &args.connect.options()?,
        scenario == ScenarioName::Idle,
        pids,
        !args.output.quiet,
    )?;
    runner::execute(&plan)
}

/// Runs the comparison; returns the exit status.
pub fn run(args: &CompareArgs) -> Result<i32, String> {
    let scenario = args.load.scenario.ok_or("compare needs --scenario NAME")?;
    let specs = ServerSpec::parse_all(&args.servers)?;
    if let Some(files) = &args.tls {
        if files.len() != 2 {
            return Err("--tls takes CERT,KEY: the certificate chain and the key (PEM)".into());
        }
        if let Some(missing) = files.iter().find(|f| !f.is_file()) {
            return Err(format!("--tls: {} is not a file", missing.display()));
        }
    }
    let dir = baselines_dir(args.baselines.as_deref())?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("reports/compare-{}.json", scenario.name())));
    let chart_path = args
        .chart
        .clone()
        .unwrap_or_else(|| out.with_extension("svg"));
    let log_dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    fs::create_dir_all(&log_dir)
        .map_err(|e| format!("cannot create {}: {e}", log_dir.display()))?;
    let taskset = have_taskset();
    let harness_cpu = pin_harness(args, taskset);
    let mut servers = Vec::new();
    for spec in &specs {
        if sys::interrupted() {
            break;
        }
        servers.push(run_one(spec, scenario, args, &dir, &log_dir, taskset));
    }
    let cmp = Comparison {
        scenario,
        port: args.port,
        server_cpus: args.server_cpus.clone(),
        harness_cpu,
        servers,
    };
    write_outputs(&cmp, args, &out, &chart_path)?;
    Ok(
        if !cmp.servers.is_empty() && cmp.servers.iter().all(|e| e.ok) {
            0
        } else {
            1
        },
    )
}

/// Pins the harness to its own core when the servers can be pinned to theirs; the core,
/// or `None` with a warning saying why not.
fn pin_harness(args: &CompareArgs, taskset: bool) -> Option<usize> {
    if sys::online_cpus() < 2 {
        eprintln!("loadtest: warning: one CPU only; server and harness share it");
    } else if !taskset {
        eprintln!(
            "loadtest: warning: taskset not found; servers run unpinned (and the harness too)"
        );
    } else {
        match sys::pin_to_cpu(args.harness_cpu) {
            Ok(()) => return Some(args.harness_cpu),
            Err(e) => eprintln!("loadtest: warning: {e}"),
        }
    }
    None
}

/// The JSON file, the chart, and the table (or JSON line) on stdout.
fn write_outputs(
    cmp: &Comparison,
    args: &CompareArgs,
    out: &Path,
    chart_path: &Path,
) -> Result<(), String> {
    let json = serde_json::to_string_pretty(cmp).map_err(|e| e.to_string())?;
    fs::write(out, json + "\n").map_err(|e| format!("cannot write {}: {e}", out.display()))?;
    let title = format!(
        "loadtest compare: {} (servers on CPU {}, harness on its own core)",
        cmp.scenario.name(),
        args.server_cpus
    );
    if let Err(e) = chart::draw(chart_path, &title, &panels(cmp)) {
        eprintln!("loadtest: warning: chart not drawn: {e}");
    }
    if args.output.json {
        println!("{}", serde_json::to_string(cmp).map_err(|e| e.to_string())?);
    } else {
        print!("{}", table(cmp));
        println!("written: {} and {}", out.display(), chart_path.display());
    }
    Ok(())
}

fn mib(kb: Option<u64>) -> String {
    kb.map_or("-".into(), |k| format!("{:.1}", k as f64 / 1024.0))
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("-".into(), |v| format!("{v:.digits$}"))
}

/// The side-by-side table.
pub fn table(cmp: &Comparison) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "scenario {} -- servers pinned to CPU {}",
        cmp.scenario.name(),
        cmp.server_cpus
    );
    match cmp.scenario {
        ScenarioName::Idle => idle_table(&mut t, cmp),
        _ => traffic_table(&mut t, cmp),
    }
    t
}

/// Idle: connections held and the memory they cost each server.
fn idle_table(t: &mut String, cmp: &Comparison) {
    let _ = writeln!(
        t,
        "{:<16} {:>9} {:>12} {:>12} {:>12} {:>12} {:>10}  status",
        "server", "connected", "rss before", "rss after", "bytes/conn", "cpu/connect", "hold cpu"
    );
    for e in &cmp.servers {
        let i = e.report.as_ref().and_then(|r| r.idle.as_ref());
        let _ = writeln!(
            t,
            "{:<16} {:>9} {:>12} {:>12} {:>12} {:>12} {:>10}  {}",
            e.name,
            e.report
                .as_ref()
                .map_or("-".into(), |r| r.connected.to_string()),
            mib(i.and_then(|i| i.rss_before_kb)),
            mib(i.and_then(|i| i.rss_after_kb)),
            opt(i.and_then(|i| i.bytes_per_connection), 0),
            opt(i.and_then(|i| i.server_cpu_us_per_connect), 1),
            opt(i.and_then(|i| i.server_cpu_s_hold), 3),
            e.status
        );
    }
    let _ = writeln!(
        t,
        "(rss in MiB, cpu/connect in µs of server CPU per connection opened, hold cpu in seconds)"
    );
}

/// Traffic scenarios: throughput, loss, latency and cost per server.
fn traffic_table(t: &mut String, cmp: &Comparison) {
    let _ = writeln!(
        t,
        "{:<16} {:>11} {:>7} {:>10} {:>10} {:>10} {:>10} {:>8} {:>8}  status",
        "server", "deliv/s", "lost", "p50", "p99", "max", "cpu us/dl", "rss MiB", "harness"
    );
    for e in &cmp.servers {
        let Some(r) = &e.report else {
            let _ = writeln!(t, "{:<16} {:>11}  {}", e.name, "-", e.status);
            continue;
        };
        let rate = r
            .saturate
            .as_ref()
            .map_or(r.delivered_per_sec, |s| s.max_sustained_delivered_per_sec);
        let _ = writeln!(
            t,
            "{:<16} {:>11.0} {:>7} {:>10} {:>10} {:>10} {:>10} {:>8} {:>7.0}%  {}",
            e.name,
            rate,
            r.lost,
            ms(r.latency_us.p50),
            ms(r.latency_us.p99),
            ms(r.latency_us.max),
            opt(r.server_cpu_us_per_delivery, 2),
            mib(r.server_rss_kb),
            r.harness_cpu_util * 100.0,
            e.status
        );
    }
    if cmp.scenario == ScenarioName::Saturate {
        let _ = writeln!(
            t,
            "(saturate: deliv/s is the highest sustained rate; latency at that step)"
        );
    }
    wire_table(t, cmp);
}

/// With `--deflate`: per server, on how many connections it was negotiated and what a
/// delivery cost on the wire.
fn wire_table(t: &mut String, cmp: &Comparison) {
    let reports: Vec<(&str, &Report)> = cmp
        .servers
        .iter()
        .filter_map(|e| e.report.as_ref().map(|r| (e.name.as_str(), r)))
        .filter(|(_, r)| r.deflate_offered)
        .collect();
    if reports.is_empty() {
        return;
    }
    let _ = writeln!(
        t,
        "{:<16} {:>11} {:>11} {:>9}",
        "permessage-deflate", "negotiated", "wire B/dl", "ratio"
    );
    for (name, r) in reports {
        let _ = writeln!(
            t,
            "{:<16} {:>11} {:>11} {:>9}",
            name,
            format!("{}/{}", r.deflate_connections, r.connected),
            opt(r.wire_bytes_per_delivery, 1),
            opt(r.compression_ratio, 2)
        );
    }
}

fn panels(cmp: &Comparison) -> Vec<Panel> {
    let col = |title: &str, f: &dyn Fn(&Report) -> Option<f64>| Panel {
        title: title.into(),
        values: cmp
            .servers
            .iter()
            .map(|e| (e.name.clone(), e.report.as_ref().and_then(f)))
            .collect(),
    };
    let rss = |r: &Report| r.server_rss_kb.map(|k| k as f64 / 1024.0);
    match cmp.scenario {
        ScenarioName::Idle => vec![
            col("server bytes per idle connection", &|r| {
                r.idle.as_ref()?.bytes_per_connection
            }),
            col("server RSS holding them (MiB)", &|r| {
                Some(r.idle.as_ref()?.rss_after_kb? as f64 / 1024.0)
            }),
            col("connections held", &|r| Some(r.connected as f64)),
            col("server CPU per connect (µs)", &|r| {
                r.idle.as_ref()?.server_cpu_us_per_connect
            }),
            col("server CPU while holding (s)", &|r| {
                r.idle.as_ref()?.server_cpu_s_hold
            }),
        ],
        ScenarioName::Saturate => vec![
            col("max sustained deliveries/s", &|r| {
                Some(r.saturate.as_ref()?.max_sustained_delivered_per_sec)
            }),
            col("p99 latency at that rate (ms)", &|r| {
                Some(r.latency_us.p99 as f64 / 1000.0)
            }),
            col("server CPU per delivery (us)", &|r| {
                r.server_cpu_us_per_delivery
            }),
            col("server RSS (MiB)", &rss),
        ],
        _ => vec![
            col("deliveries per second", &|r| Some(r.delivered_per_sec)),
            col("p99 latency (ms)", &|r| {
                Some(r.latency_us.p99 as f64 / 1000.0)
            }),
            col("server CPU per delivery (us)", &|r| {
                r.server_cpu_us_per_delivery
            }),
            col("server RSS (MiB)", &rss),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(label: &str, baseline: &str, binary: Option<&str>) -> ServerSpec {
        ServerSpec {
            label: label.into(),
            baseline: baseline.into(),
            binary: binary.map(PathBuf::from),
        }
    }

    #[test]
    fn server_entries_name_baselines_labels_and_binaries() {
        assert_eq!(ServerSpec::parse("bun"), Ok(spec("bun", "bun", None)));
        assert_eq!(
            ServerSpec::parse("new=roomcast"),
            Ok(spec("new", "roomcast", None))
        );
        assert_eq!(
            ServerSpec::parse("before=/work/bin/roomcast-before"),
            Ok(spec(
                "before",
                PREBUILT_BASELINE,
                Some("/work/bin/roomcast-before")
            ))
        );
        assert_eq!(
            ServerSpec::parse("after=target/release/roomcast"),
            Ok(spec(
                "after",
                PREBUILT_BASELINE,
                Some("target/release/roomcast")
            ))
        );
        assert!(ServerSpec::parse("=bun").is_err());
        assert!(ServerSpec::parse("a b=bun").is_err());
        assert!(ServerSpec::parse("x=").is_err());
        let all =
            |s: &str| ServerSpec::parse_all(&s.split(',').map(String::from).collect::<Vec<_>>());
        assert_eq!(all("before=/a,after=/b,bun").unwrap().len(), 3);
        assert!(all("roomcast,roomcast").is_err(), "labels must differ");
        assert!(all("x=/a,x=/b").is_err());
    }
}
