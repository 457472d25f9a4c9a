//! `volna client` with piped stdin: sends every line, prints the replies and
//! exits cleanly at EOF; its messages reach other clients.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::*;

#[tokio::test]
async fn piped_client_sends_prints_and_exits() {
    let server = start_default().await;
    let mut watcher = LineClient::named(&server, "watcher", &["a"]).await;
    let url = format!("tcp://{}", server.tcp_addr);
    let out = tokio::task::spawn_blocking(move || {
        let mut child = Command::new(env!("CARGO_BIN_EXE_volna"))
            .args(["client", &url])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"/nick cli\n/join a\nhello\n")
            .unwrap();
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    // Piped output is raw protocol lines.
    assert!(lines[0].starts_with("welcome volna"), "{stdout}");
    assert_eq!(lines[1], "ok nick cli");
    assert_eq!(lines[2], "ok join a cli watcher");
    let m = parse_msg(lines[3]);
    assert_eq!(
        (m.from.as_str(), m.text.as_str(), m.offset),
        ("cli", "hello", 1)
    );

    assert_eq!(watcher.line().await, "joined a cli 2");
    assert_eq!(parse_msg(&watcher.line().await).text, "hello");
    assert_eq!(watcher.line().await, "left a cli 1");
}

#[tokio::test]
async fn unreachable_server_is_a_clear_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let out = Command::new(env!("CARGO_BIN_EXE_volna"))
        .args(["client", &format!("tcp://{addr}")])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("cannot connect to {addr}")),
        "{stderr}"
    );
}
