//! The `volna serve` process: startup message, clear error on a taken port,
//! clean shutdown on SIGTERM with a goodbye to every client.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;

fn volna() -> Command {
    Command::new(env!("CARGO_BIN_EXE_volna"))
}

#[test]
fn taken_port_is_a_clear_error() {
    let holder = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port();
    let out = volna()
        .args([
            "serve",
            "--tcp-addr",
            &format!("127.0.0.1:{port}"),
            "--http-addr",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "cannot listen for TCP clients on 127.0.0.1:{port}"
        )) && stderr.contains("another process holds that port"),
        "{stderr}"
    );
}

#[test]
fn sigterm_says_goodbye_and_exits_promptly() {
    let (mut child, tcp, http) = common::spawn_serve(Stdio::piped());

    let mut client = TcpStream::connect(&tcp).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    client.write_all(b"/join lobby\n").unwrap();
    let mut reader = BufReader::new(client.try_clone().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(line.starts_with("welcome"), "{line}");
    line.clear();
    reader.read_line(&mut line).unwrap();
    assert!(line.starts_with("ok join lobby"), "{line}");

    // The health endpoint answers on the HTTP address.
    let mut h = TcpStream::connect(&http).unwrap();
    h.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut resp = String::new();
    h.read_to_string(&mut resp).unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.contains("\"connections_open\":1"), "{resp}");

    let started = Instant::now();
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    line.clear();
    reader.read_line(&mut line).unwrap();
    // SIGTERM drains: the client is told to reconnect elsewhere.
    assert_eq!(
        line.trim_end(),
        "bye server-restart: the server is restarting; reconnect, another node will serve you"
    );
    line.clear();
    assert_eq!(
        reader.read_line(&mut line).unwrap(),
        0,
        "then the connection closes"
    );

    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "volna did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(stderr.contains("stopped:"), "{stderr}");
    // The listener is gone.
    assert!(TcpStream::connect(&tcp).is_err());
}
