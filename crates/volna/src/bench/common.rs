//! The options every `volna bench` scenario takes (`--url`, `--pid`,
//! `--room`, `--json`, …), flattened into each [`super::Scenario`] variant.

/// Options shared by every scenario.
#[derive(Debug, Clone, clap::Args)]
pub struct Common {
    /// Target: socketio://HOST:PORT (Socket.IO v4 at /socket.io/), ws://HOST:PORT/ws (volna JSON)
    /// or tcp://HOST:PORT (volna lines).
    #[arg(long, default_value = "socketio://127.0.0.1:3000")]
    pub url: String,
    /// The server's process id: adds its CPU time and memory to the report.
    #[arg(long)]
    pub pid: Option<u32>,
    /// Room to use.
    #[arg(long, default_value = "bench")]
    pub room: String,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// Connections opened at once while setting up.
    #[arg(long, default_value_t = 256)]
    pub concurrency: usize,
    /// Spread client sockets over this many source addresses 127.0.0.1, 127.0.0.2, … (each
    /// source/destination pair allows ~28k connections).
    #[arg(long, default_value_t = 1)]
    pub source_ips: u8,
    /// Connect every second member to this URL instead: another node of the same cluster
    /// (docs/cluster.md), so half the room is reached across nodes.
    #[arg(long)]
    pub spread_url: Option<String>,
    /// A token every client presents when it connects (Socket.IO auth, /ws ?token=, TCP /auth):
    /// for servers that check JWTs.
    #[arg(long)]
    pub token: Option<String>,
}
