//! `volna bench` against a real `volna serve`: what its JSON reports, and its
//! error when nothing listens.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};

use serde_json::Value;

mod common;

fn volna() -> Command {
    Command::new(env!("CARGO_BIN_EXE_volna"))
}

/// A server on free ports; killed when dropped.
struct Server {
    child: Child,
    http: String,
}

impl Server {
    fn start() -> Server {
        let (child, _tcp, http) = common::spawn_serve(Stdio::null());
        Server { child, http }
    }

    fn pid(&self) -> String {
        self.child.id().to_string()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `volna bench ARGS --json --quiet` and returns its report.
fn bench(args: &[&str]) -> Value {
    let out = volna()
        .arg("bench")
        .args(args)
        .args(["--json", "--quiet"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "bench {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim().lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

#[test]
fn fanout_conns_and_echo_report_what_happened() {
    let srv = Server::start();
    let url = format!("socketio://{}", srv.http);
    let pid = srv.pid();

    let r = bench(&[
        "fanout", "--url", &url, "--pid", &pid, "-n", "20", "-m", "30", "--rate", "300",
    ]);
    assert_eq!(r["expected deliveries"], 600, "{r}");
    assert_eq!(r["delivered"], 600, "{r}");
    assert_eq!(r["lost"], 0, "{r}");
    assert_eq!(r["members that failed to join"], 0, "{r}");
    assert!(
        r["server CPU per delivery (us)"].as_f64().unwrap() > 0.0,
        "{r}"
    );
    assert!(r["latency p99 (ms)"].as_f64().unwrap() > 0.0, "{r}");

    let r = bench(&[
        "conns", "--url", &url, "--pid", &pid, "-n", "60", "--hold", "0.3",
    ]);
    assert_eq!(r["connected+joined"], 60, "{r}");
    assert_eq!(r["failures"], 0, "{r}");
    assert_eq!(r["still open after hold"], 60, "{r}");
    assert!(r["connects/s"].as_f64().unwrap() > 0.0, "{r}");

    let r = bench(&[
        "echo",
        "--url",
        &format!("ws://{}/ws", srv.http),
        "-n",
        "3",
        "-m",
        "50",
    ]);
    assert_eq!(r["round trips"], 150, "{r}");
    assert_eq!(r["failures"], 0, "{r}");
}

#[test]
fn one_run_from_several_processes_against_several_servers() {
    // Two independent servers, rooms spread so that room-0 lives on the
    // first and room-1 on the second: three worker processes, each with
    // members on both, and one report that adds them up.
    let (one, two) = (Server::start(), Server::start());
    let urls = format!("socketio://{},ws://{}/ws", one.http, two.http);
    let args = format!(
        "fanout --urls {urls} --processes 3 --rooms 2 --publishers 2 -n 31 -m 10 --rate 200"
    );
    let r = bench(&args.split_whitespace().collect::<Vec<_>>());
    // 16 members in room-0 and 15 in room-1, 5 messages each.
    assert_eq!(r["generator processes"], 3, "{r}");
    assert_eq!(r["connected+joined"], 31, "{r}");
    assert_eq!(r["expected deliveries"], 155, "{r}");
    assert_eq!(r["delivered"], 155, "{r}");
    assert_eq!(r["still open after hold"], 31, "{r}");
    assert!(r["latency p50 (ms)"].as_f64().unwrap() > 0.0, "{r}");
    // The phases a script can follow come on stderr.
    let out = volna()
        .args([
            "bench",
            "conns",
            "--urls",
            &urls,
            "--processes",
            "2",
            "-n",
            "10",
        ])
        .args(["--hold", "0.2", "--quiet", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let phases: Vec<String> = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter_map(|l| l.strip_prefix("phase: ").map(String::from))
        .collect();
    assert_eq!(
        phases,
        ["connecting", "joined", "held", "published", "done"]
    );
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["still open after hold"], 10, "{r}");
}

#[test]
fn a_target_that_is_down_is_a_clear_error() {
    // A port nobody listens on.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = volna()
        .args([
            "bench",
            "fanout",
            "--url",
            &format!("socketio://127.0.0.1:{port}"),
            "-n",
            "5",
            "--quiet",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("127.0.0.1:{port}")) && stderr.to_lowercase().contains("refused"),
        "{stderr}"
    );
}
