//! The `roomcast` binary: parse flags, raise the open-file limit, run the
//! relay until SIGINT or SIGTERM, exit 0 after a graceful shutdown.

use clap::Parser;
use log::{error, info, warn};
use roomcast::{Config, Server};
use std::process::ExitCode;

fn main() -> ExitCode {
    let config = Config::parse();
    roomcast::logger::init(config.log_level);
    if let Err(e) = config.validate() {
        eprintln!("roomcast: {e}");
        return ExitCode::from(2);
    }
    if let (Some(cert), Some(key)) = (&config.tls_cert, &config.tls_key) {
        // The files are checked at start, so a bad certificate fails here
        // in plain words rather than at the first handshake.
        let loaded = roomcast::tls::CertFiles::new(cert, key).and_then(|files| files.load());
        if let Err(e) = loaded {
            eprintln!("roomcast: {e}");
            return ExitCode::from(2);
        }
        // Until the event loop serves TLS, refuse rather than serve
        // plaintext to clients that were promised https:// and wss://.
        eprintln!("roomcast: --tls-cert/--tls-key are not served by this build's event loop yet");
        return ExitCode::from(2);
    }
    let nofile = roomcast::limits::raise_open_file_limit();
    let server = match Server::bind_with_signals(&config) {
        Ok(s) => s,
        Err(e) => {
            error!("cannot start on {}: {e}", config.bind);
            return ExitCode::from(1);
        }
    };
    info!(
        "roomcast {} listening on {} (workers {}, max connections {}, open-file limit {nofile})",
        env!("CARGO_PKG_VERSION"),
        server.local_addr(),
        config.worker_threads(),
        config.connection_limit(),
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
