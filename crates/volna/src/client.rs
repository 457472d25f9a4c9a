//! `volna client`: an interactive line client.
//!
//! Reads lines from standard input and sends them while printing whatever the
//! server sends, both at once on the event loop (the source notes' client
//! reads only after each send; a chat needs both directions concurrently).
//! With stdin piped it sends everything, half-closes its side, prints the
//! server's remaining replies and exits when the server closes.

use std::io::IsTerminal;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Where to connect, parsed from `tcp://HOST:PORT` or `HOST:PORT`.
pub fn parse_target(url: &str) -> anyhow::Result<String> {
    let rest = match url.split_once("://") {
        Some(("tcp", rest)) => rest,
        Some((scheme, _)) => anyhow::bail!(
            "unsupported scheme {scheme}:// (volna client speaks the TCP line protocol: tcp://HOST:PORT)"
        ),
        None => url,
    };
    let rest = rest.trim_end_matches('/');
    anyhow::ensure!(
        rest.rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok()),
        "expected tcp://HOST:PORT, got {url}"
    );
    Ok(rest.to_string())
}

/// Runs the client until the server closes the connection or, after stdin
/// ends, until the server has answered.
pub async fn run(url: &str, pretty: Option<bool>) -> anyhow::Result<()> {
    let target = parse_target(url)?;
    let stream = TcpStream::connect(&target)
        .await
        .map_err(|e| anyhow::anyhow!("cannot connect to {target}: {e}"))?;
    stream.set_nodelay(true)?;
    let pretty = pretty.unwrap_or_else(|| std::io::stdout().is_terminal());
    let (rd, mut wr) = stream.into_split();
    let mut server_lines = BufReader::new(rd).lines();
    let mut stdin_lines = BufReader::new(tokio::io::stdin()).lines();
    let mut out = std::io::stdout();
    loop {
        tokio::select! {
            line = server_lines.next_line() => match line? {
                Some(line) => print_line(&mut out, &line, pretty)?,
                None => {
                    if pretty {
                        eprintln!("(connection closed by the server)");
                    }
                    return Ok(());
                }
            },
            line = stdin_lines.next_line() => match line? {
                Some(line) => {
                    wr.write_all(line.as_bytes()).await?;
                    wr.write_all(b"\n").await?;
                }
                None => {
                    // No more input: let the server flush its replies and close.
                    wr.shutdown().await?;
                    return drain(&mut server_lines, &mut out, pretty).await;
                }
            },
        }
    }
}

async fn drain<R: tokio::io::AsyncBufRead + Unpin>(
    lines: &mut tokio::io::Lines<R>,
    out: &mut std::io::Stdout,
    pretty: bool,
) -> anyhow::Result<()> {
    let deadline = tokio::time::sleep(Duration::from_secs(5));
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            line = lines.next_line() => match line? {
                Some(line) => print_line(out, &line, pretty)?,
                None => return Ok(()),
            },
            _ = &mut deadline => return Ok(()),
        }
    }
}

fn print_line(out: &mut std::io::Stdout, line: &str, pretty: bool) -> std::io::Result<()> {
    use std::io::Write;
    if pretty {
        writeln!(out, "{}", prettify(line))?;
    } else {
        writeln!(out, "{line}")?;
    }
    out.flush()
}

/// Renders protocol lines for people: `msg lobby 3 2026-…T10:11:12.345Z bob: hi`
/// becomes `[lobby 10:11:12] bob: hi`.
pub fn prettify(line: &str) -> String {
    let mut parts = line.splitn(5, ' ');
    match parts.next() {
        Some("msg") => {
            let (Some(room), Some(_offset), Some(ts), Some(rest)) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                return line.to_string();
            };
            let time = ts.get(11..19).unwrap_or(ts);
            let rest = match parts.next() {
                Some(more) => format!("{rest} {more}"),
                None => rest.to_string(),
            };
            format!("[{room} {time}] {rest}")
        }
        Some(verb @ ("joined" | "left")) => {
            let (Some(room), Some(name), Some(count)) = (parts.next(), parts.next(), parts.next())
            else {
                return line.to_string();
            };
            format!("* {name} {verb} {room} ({count} here)")
        }
        _ => line.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert_eq!(
            parse_target("tcp://127.0.0.1:7000").unwrap(),
            "127.0.0.1:7000"
        );
        assert_eq!(parse_target("localhost:7000").unwrap(), "localhost:7000");
        assert!(parse_target("ws://x:1").is_err());
        assert!(parse_target("tcp://nohost").is_err());
    }

    #[test]
    fn pretty_lines() {
        assert_eq!(
            prettify("msg lobby 3 2026-11-25T10:11:12.345Z bob: hi there"),
            "[lobby 10:11:12] bob: hi there"
        );
        assert_eq!(
            prettify("joined lobby bob 2"),
            "* bob joined lobby (2 here)"
        );
        assert_eq!(prettify("ok join lobby a b"), "ok join lobby a b");
    }
}
