//! Other processes as the kernel shows them in /proc: the server under test's CPU time
//! and resident memory (summed over several PIDs, for stacks such as daphne + redis),
//! its open-file limit, and process-tree lookups used by `compare`.

use std::fs;

/// Fields of /proc/PID/stat after the `(comm)` field, which may itself contain spaces
/// and parentheses; index 0 is field 3 (`state`) of proc(5).
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &s[s.rfind(')')? + 1..];
    Some(after.split_whitespace().map(str::to_string).collect())
}

fn field(pid: u32, number: usize) -> Option<u64> {
    stat_fields(pid)?.get(number.checked_sub(3)?)?.parse().ok()
}

fn ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// utime + stime of `pid` (all its threads), in seconds.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let f = stat_fields(pid)?;
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / ticks_per_second())
}

/// Time `pid`'s threads spent runnable but waiting for a CPU (the second field of
/// /proc/PID/task/*/schedstat), in seconds: on a shared machine this shows a process that
/// was starved rather than slow. `None` without schedstats.
pub fn runqueue_wait_seconds(pid: u32) -> Option<f64> {
    let mut total_ns: u64 = 0;
    let mut any = false;
    for task in fs::read_dir(format!("/proc/{pid}/task")).ok()?.flatten() {
        let Ok(s) = fs::read_to_string(task.path().join("schedstat")) else {
            continue;
        };
        if let Some(ns) = s
            .split_whitespace()
            .nth(1)
            .and_then(|v| v.parse::<u64>().ok())
        {
            total_ns += ns;
            any = true;
        }
    }
    any.then(|| total_ns as f64 / 1e9)
}

/// A `/proc/PID/status` value in kB (`VmRSS`, `VmHWM`, ...).
pub fn status_kb(pid: u32, key: &str) -> Option<u64> {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

pub fn rss_kb(pid: u32) -> Option<u64> {
    status_kb(pid, "VmRSS")
}

/// Open file descriptors of `pid`: the entries of /proc/PID/fd (needs the same user).
pub fn fd_count(pid: u32) -> Option<u64> {
    Some(fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64)
}

pub fn ppid(pid: u32) -> Option<u32> {
    field(pid, 4).map(|v| v as u32)
}

pub fn pgrp(pid: u32) -> Option<u32> {
    field(pid, 5).map(|v| v as u32)
}

pub fn alive(pid: u32) -> bool {
    // A zombie still has /proc/PID but is no longer running anything.
    stat_fields(pid).is_some_and(|f| f.first().map(String::as_str) != Some("Z"))
}

/// (soft, hard) "Max open files" of `pid`; `None` for "unlimited" or unreadable.
pub fn nofile_limits(pid: u32) -> Option<(u64, u64)> {
    let s = fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = s.lines().find(|l| l.starts_with("Max open files"))?;
    let mut it = line["Max open files".len()..].split_whitespace();
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

/// All descendants of `root` (children, grandchildren, ...), found by scanning /proc.
pub fn descendants(root: u32) -> Vec<u32> {
    let mut parent_of = Vec::new();
    if let Ok(dir) = fs::read_dir("/proc") {
        for entry in dir.flatten() {
            if let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            {
                if let Some(pp) = ppid(pid) {
                    parent_of.push((pid, pp));
                }
            }
        }
    }
    let mut out = Vec::new();
    let mut frontier = vec![root];
    while let Some(p) = frontier.pop() {
        for &(child, pp) in &parent_of {
            if pp == p && !out.contains(&child) {
                out.push(child);
                frontier.push(child);
            }
        }
    }
    out
}

/// Whether some socket listens on TCP `port` (IPv4 or IPv6), read from /proc/net/tcp*
/// so that checking never opens a connection the server would see.
pub fn port_listening(port: u16) -> bool {
    let want = format!(":{port:04X}");
    ["/proc/net/tcp", "/proc/net/tcp6"].iter().any(|path| {
        fs::read_to_string(path).is_ok_and(|s| {
            s.lines().skip(1).any(|l| {
                let mut f = l.split_whitespace();
                let local = f.nth(1).unwrap_or("");
                let state = f.nth(1).unwrap_or("");
                state == "0A" && local.ends_with(&want)
            })
        })
    })
}

/// One reading of the server's processes.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Sample {
    pub cpu_s: f64,
    pub rss_kb: u64,
    /// Run-queue wait, when the kernel keeps schedstats.
    pub wait_s: Option<f64>,
}

/// The server under test: zero or more PIDs whose figures are summed.
#[derive(Clone, Debug, Default)]
pub struct ServerProcs {
    pids: Vec<u32>,
}

impl ServerProcs {
    pub fn new(pids: &[u32]) -> Result<ServerProcs, String> {
        for &pid in pids {
            if !alive(pid) {
                return Err(format!("--server-pid {pid}: no such running process"));
            }
        }
        Ok(ServerProcs {
            pids: pids.to_vec(),
        })
    }

    pub fn pids(&self) -> &[u32] {
        &self.pids
    }

    pub fn is_empty(&self) -> bool {
        self.pids.is_empty()
    }

    /// Summed CPU seconds and RSS; `None` without PIDs or when one has gone away.
    pub fn sample(&self) -> Option<Sample> {
        Self::sum(&self.sample_each())
    }

    /// One reading per PID, in the order given (`None` for one that has gone away).
    pub fn sample_each(&self) -> Vec<Option<Sample>> {
        self.pids
            .iter()
            .map(|&pid| {
                Some(Sample {
                    cpu_s: cpu_seconds(pid)?,
                    rss_kb: rss_kb(pid)?,
                    wait_s: runqueue_wait_seconds(pid),
                })
            })
            .collect()
    }

    /// The sum of per-PID readings; `None` when there are none or one is missing (the
    /// run-queue wait is `None` when any PID lacks it).
    pub fn sum(each: &[Option<Sample>]) -> Option<Sample> {
        if each.is_empty() {
            return None;
        }
        let mut s = Sample {
            wait_s: Some(0.0),
            ..Sample::default()
        };
        for x in each {
            let x = (*x)?;
            s.cpu_s += x.cpu_s;
            s.rss_kb += x.rss_kb;
            s.wait_s = s.wait_s.zip(x.wait_s).map(|(a, b)| a + b);
        }
        Some(s)
    }

    /// Anonymous resident memory (`RssAnon`: heap and stacks, no code pages), summed.
    pub fn rss_anon_kb(&self) -> Option<u64> {
        if self.pids.is_empty() {
            return None;
        }
        self.pids.iter().map(|&p| status_kb(p, "RssAnon")).sum()
    }

    /// Open descriptors, summed; `None` without PIDs or when one is unreadable.
    pub fn fds(&self) -> Option<u64> {
        if self.pids.is_empty() {
            return None;
        }
        self.pids.iter().map(|&p| fd_count(p)).sum()
    }

    /// The smallest soft open-file limit among the PIDs.
    pub fn min_nofile(&self) -> Option<u64> {
        self.pids
            .iter()
            .filter_map(|&p| nofile_limits(p).map(|l| l.0))
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let me = std::process::id();
        assert!(cpu_seconds(me).is_some());
        assert!(rss_kb(me).unwrap() > 0);
        assert!(alive(me));
        assert!(runqueue_wait_seconds(me).is_some());
        assert!(nofile_limits(me).is_some());
        // Other tests run in parallel threads of this process: no exact count.
        assert!(fd_count(me).unwrap() >= 3);
        assert_eq!(ppid(me), Some(std::os::unix::process::parent_id()));
        let procs = ServerProcs::new(&[me]).unwrap();
        assert!(procs.sample().unwrap().rss_kb > 0);
        let twice = ServerProcs::new(&[me, me]).unwrap();
        let each = twice.sample_each();
        assert_eq!(each.len(), 2);
        assert_eq!(
            ServerProcs::sum(&each).unwrap().rss_kb,
            each[0].unwrap().rss_kb + each[1].unwrap().rss_kb
        );
        assert_eq!(ServerProcs::sum(&[each[0], None]), None);
        assert!(procs.fds().unwrap() >= 3);
        assert!(procs.rss_anon_kb().unwrap() > 0);
        assert_eq!(ServerProcs::default().fds(), None);
        assert!(ServerProcs::new(&[u32::MAX - 1]).is_err());
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        assert!(port_listening(port));
        drop(l);
        assert!(!port_listening(port));
    }
}
