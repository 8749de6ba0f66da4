//! `loadtest compare` mechanics end to end with stand-in baselines: a server that starts,
//! reports its PID and stops on SIGTERM (a plain HTTP server, so every handshake fails and
//! the row shows it), one whose script dies at once, and one that does not exist.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

const FAKE: &str = r#"#!/usr/bin/env bash
PORT=$1
python3 -m http.server "$PORT" --bind 127.0.0.1 >/dev/null 2>&1 &
child=$!
trap 'kill $child; wait $child; exit 0' TERM INT
for _ in $(seq 100); do (echo > /dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.1; done
[ -n "${PIDFILE:-}" ] && echo $child > "$PIDFILE"
wait $child
"#;

fn script(dir: &Path, name: &str, body: &str) {
    fs::create_dir_all(dir.join(name)).unwrap();
    let path = dir.join(name).join("run.sh");
    fs::write(&path, body).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn compare_starts_measures_and_stops_each_server() {
    if Command::new("python3").arg("--version").output().is_err() {
        eprintln!("python3 not found: skipping");
        return;
    }
    let dir = std::env::temp_dir().join(format!("loadtest-compare-test-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    let baselines = dir.join("baselines");
    script(&baselines, "fake", FAKE);
    script(
        &baselines,
        "broken",
        "#!/usr/bin/env bash\necho 'cannot start' >&2\nexit 3\n",
    );
    // The prebuilt-binary baseline: says which binary it was handed, then serves.
    script(
        &baselines,
        "roomcast-bin",
        &FAKE.replacen(
            "PORT=$1\n",
            "PORT=$1\necho \"binary: $ROOMCAST_BIN\" >&2\n",
            1,
        ),
    );
    let binary = dir.join("roomcast-before");
    fs::write(&binary, "#!/bin/sh\n").unwrap();
    let out = dir.join("cmp.json");
    let status = Command::new(env!("CARGO_BIN_EXE_loadtest"))
        .args([
            "compare",
            "--scenario",
            "pairs",
            "--servers",
            &format!("fake,broken,missing,before={}", binary.display()),
            "--port",
            "9187",
        ])
        .args([
            "--clients",
            "4",
            "--rooms",
            "2",
            "--warmup",
            "0",
            "--duration",
            "0.2",
            "--drain",
            "0.5",
        ])
        .args(["--ready-timeout", "30", "--stop-timeout", "5", "-q"])
        .arg("--baselines")
        .arg(&baselines)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&status.stdout);
    assert_eq!(
        status.status.code(),
        Some(1),
        "{stdout}\n{}",
        String::from_utf8_lossy(&status.stderr)
    );
    assert!(
        ["fake", "broken", "missing", "before"]
            .iter()
            .all(|name| stdout.contains(name)),
        "{stdout}"
    );

    let cmp: serde_json::Value = serde_json::from_str(&fs::read_to_string(&out).unwrap()).unwrap();
    let servers = cmp["servers"].as_array().unwrap();
    assert_eq!(servers.len(), 4);
    let fake = &servers[0];
    assert_eq!(fake["name"], "fake");
    let pids: Vec<u32> = fake["pids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_u64().unwrap() as u32)
        .collect();
    assert_eq!(pids.len(), 1, "{fake}");
    // It ran: every handshake got a 404 from the HTTP server, and the row says so.
    assert_eq!(fake["report"]["connect_failures"], 4);
    assert!(
        fake["status"].as_str().unwrap().starts_with("failed"),
        "{fake}"
    );
    // And it was stopped: the server process is gone.
    assert!(
        !Path::new(&format!("/proc/{}", pids[0])).exists(),
        "server {} still running",
        pids[0]
    );
    assert!(
        servers[1]["status"]
            .as_str()
            .unwrap()
            .starts_with("not run: run.sh exited"),
        "{}",
        servers[1]
    );
    assert!(servers[2]["status"]
        .as_str()
        .unwrap()
        .contains("does not exist"));
    // A labelled binary runs under its label through roomcast-bin, handed its path.
    let before = &servers[3];
    assert_eq!(
        (&before["name"], &before["baseline"]),
        (&"before".into(), &"roomcast-bin".into())
    );
    assert_eq!(before["report"]["connect_failures"], 4, "{before}");
    let log = fs::read_to_string(dir.join("compare-pairs-before.log")).unwrap();
    assert!(
        log.contains(&format!("binary: {}", binary.display())),
        "{log}"
    );
    let svg = fs::read_to_string(out.with_extension("svg")).unwrap();
    assert!(svg.contains("deliveries per second"));
    assert!(dir.join("compare-pairs-fake.log").exists());
    let _ = fs::remove_dir_all(&dir);
}
