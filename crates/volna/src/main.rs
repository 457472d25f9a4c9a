//! The `volna` command: `serve`, `client`, `bench`.

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;
use volna::config::ServeArgs;
use volna::server::Server;

/// volna: a real-time messaging server (raw TCP lines, WebSocket, Socket.IO v4).
#[derive(Parser)]
#[command(name = "volna", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (in memory, single node) until Ctrl-C or SIGTERM.
    Serve(Box<ServeArgs>),
    /// Chat from the terminal: type lines, see the room live.
    Client {
        /// Server address: tcp://HOST:PORT
        #[arg(default_value = "tcp://127.0.0.1:7000")]
        url: String,
        /// Print raw protocol lines even on a terminal.
        #[arg(long)]
        raw: bool,
    },
    /// Load-test a Socket.IO v4 server (volna or another) or volna's /ws and TCP endpoints.
    Bench {
        #[command(subcommand)]
        scenario: Box<volna::bench::Scenario>,
    },
}

fn main() {
    if let Err(e) = run(Cli::parse()) {
        eprintln!("volna: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Serve(args) => {
            let (config, log) = args.resolve()?;
            init_logging(&log)?;
            runtime.block_on(serve(config))
        }
        Command::Client { url, raw } => {
            let result = runtime.block_on(volna::client::run(
                &url,
                if raw { Some(false) } else { None },
            ));
            // Reading stdin blocks a thread that cannot be cancelled; do not
            // wait for the user to press Enter once the session is over.
            runtime.shutdown_timeout(std::time::Duration::from_millis(100));
            result
        }
        Command::Bench { scenario } => {
            let result = runtime.block_on(volna::bench::run(*scenario));
            runtime.shutdown_timeout(std::time::Duration::from_millis(100));
            result
        }
    }
}

fn init_logging(filter: &str) -> anyhow::Result<()> {
    let filter = EnvFilter::try_new(filter)
        .map_err(|e| anyhow::anyhow!("invalid --log filter {filter:?}: {e}"))?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    Ok(())
}

async fn serve(config: volna::config::ServerConfig) -> anyhow::Result<()> {
    let tls = config.tls.is_some();
    let server = Server::start(config).await?;
    // Before the banner: a SIGTERM sent as soon as it is printed must find
    // the handler in place, not kill the process undrained.
    let signals = Signals::install();
    let (tcp, http) = (server.tcp_addr, server.http_addr);
    let version = env!("CARGO_PKG_VERSION");
    if tls {
        println!(
            "volna {version} serving: tls://{tcp} (try: openssl s_client -quiet -connect {tcp}), https://{http}"
        );
    } else {
        println!(
            "volna {version} serving: tcp://{tcp} (try: nc {} {}), http://{http}",
            tcp.ip(),
            tcp.port()
        );
    }
    let drain = server.drain_window();
    match signals.wait().await {
        Signal::Terminate => server.drain(drain).await,
        Signal::Interrupt => server.shutdown().await,
    }
    Ok(())
}

/// What stops the server: SIGTERM (a service manager, a rolling restart)
/// drains it; Ctrl-C stops it at once.
enum Signal {
    Terminate,
    Interrupt,
}

/// The signal handlers, installed once.
struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> Signals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Signals {
                term: signal(SignalKind::terminate()).expect("install SIGTERM handler"),
                int: signal(SignalKind::interrupt()).expect("install SIGINT handler"),
            }
        }
        #[cfg(not(unix))]
        Signals {}
    }

    async fn wait(mut self) -> Signal {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.int.recv() => Signal::Interrupt,
                _ = self.term.recv() => Signal::Terminate,
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            Signal::Interrupt
        }
    }
}
