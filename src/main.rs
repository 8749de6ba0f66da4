//! The `roomcast` binary: parse flags, raise the open-file limit, run the
//! relay until SIGINT or SIGTERM, exit 0 after a graceful shutdown.

use clap::Parser;
use log::{error, info, warn};
use roomcast::{Config, Server, Settings};
use std::process::ExitCode;

fn main() -> ExitCode {
    let config = Config::parse();
    roomcast::logger::init(config.log_level);
    let settings = match Settings::from_config(config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("roomcast: {e}");
            return ExitCode::from(2);
        }
    };
    let nofile = roomcast::server::sys::raise_open_file_limit();
    let bind = settings.bind;
    let server = match Server::new(settings, true) {
        Ok(s) => s,
        Err(e) => {
            error!("cannot start on {bind}: {e}");
            return ExitCode::from(1);
        }
    };
    info!(
        "roomcast {} listening on {} (workers {}, max connections {}, open-file limit {nofile})",
        env!("CARGO_PKG_VERSION"),
        server.local_addr(),
        server.workers(),
        server.max_connections(),
    );
    if server.origins_allow_any() {
        warn!("accepting WebSocket upgrades from any Origin; set --allowed-origins to restrict browsers");
    }
    match server.run() {
        Ok(summary) => {
            info!(
                "stopped: {} connections at shutdown ({} WebSockets), {} closed cleanly, {} cut at the grace deadline, {} bytes flushed during the grace period",
                summary.connections_at_shutdown, summary.websockets_at_shutdown, summary.closed_cleanly, summary.cut_at_deadline, summary.bytes_flushed_during_grace
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            error!("cannot run: {e}");
            ExitCode::from(1)
        }
    }
}
