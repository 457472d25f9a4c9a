//! The raw TCP line transport (`docs/tcp-protocol.md`).
//!
//! Each connection runs two tasks: this one reads lines and acts on them, a
//! writer task drains the connection's [`Outbox`] and writes everything
//! queued with one vectored write. Replies and broadcasts go through the same
//! outbox, so a client sees them in the order the server produced them.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use volna_hub::{
    Batch, CloseReason, Codec, Conn, Data, Event, Frame, HubError, Outbox, OutboxLimits,
    PresenceKind,
};

use crate::app::admit::{self, Arrival};
use crate::app::{self, Applied, Op, Reply};
use crate::tls::Tls;
use crate::wire::Wire;
use volna_protocols::line::{self, sanitize_for_line, Command, Item, LineSplitter, Timestamp};

/// Settings of the TCP transport.
#[derive(Debug, Clone)]
pub struct TcpConfig {
    /// Longest accepted line in bytes, not counting the line ending.
    /// Defaults to 4096.
    pub max_line: usize,
    /// Bounds of each connection's outgoing queue.
    pub outbox: OutboxLimits,
    /// How long the server keeps trying to deliver the last frames and the
    /// `bye` line to a client being disconnected. Defaults to 5 s.
    pub close_grace: Duration,
    /// Messages `/history` returns when given no count. Defaults to 20.
    pub history_default: usize,
    /// A partial line that has waited this long with no more bytes is taken
    /// as a complete line, so clients that `send()` text without a newline
    /// (as in the classic Python socket examples) still get answers. `None`
    /// waits for the newline forever. Defaults to 300 ms.
    pub partial_line_flush: Option<Duration>,
    /// A client that sends no line at all this long after connecting is
    /// closed (sockets held open and silent cost a file each). `None`:
    /// never. Defaults to 120 s.
    pub first_line_timeout: Option<Duration>,
    /// TLS on the line port (`openssl s_client`, `ncat --ssl`); `None`:
    /// plain TCP. Defaults to `None`.
    pub tls: Option<Tls>,
}

impl Default for TcpConfig {
    fn default() -> Self {
        TcpConfig {
            max_line: 4096,
            outbox: OutboxLimits::default(),
            close_grace: Duration::from_secs(5),
            history_default: 20,
            partial_line_flush: Some(Duration::from_millis(300)),
            first_line_timeout: Some(Duration::from_secs(120)),
            tls: None,
        }
    }
}

/// The namespace TCP clients live in (shared with Socket.IO's `/`).
pub const NAMESPACE: &str = "/";

const HELP: &str = "\
ok help commands:
  /nick NAME        change your name
  /join ROOM        join (or create) ROOM and make it your current room
  /leave [ROOM]     leave ROOM (default: the current room)
  /msg ROOM TEXT    send TEXT to ROOM without switching to it
  /who [ROOM]       list the members of ROOM
  /rooms            list every room with its member count
  /history [N]      the last N messages of the current room
  /echo TEXT        the server answers TEXT back
  /emit EVENT JSON  your application's own event to your current room
  /auth TOKEN       sign in (a server with a connect hook asks its backend who you are)
  /quit             disconnect
  any other line    a message to your current room (start it with // to send a leading /)
";

/// Encodes hub events as protocol lines. Stateless: one key for every TCP
/// connection, so a broadcast is rendered once for all of them.
pub struct LineCodec;

impl LineCodec {
    const KEY: u64 = u64::from_be_bytes(*b"tcp-line");
}

impl Codec for LineCodec {
    fn protocol(&self) -> &'static str {
        "tcp"
    }

    fn key(&self) -> u64 {
        Self::KEY
    }

    fn encode(&self, event: &Event<'_>, out: &mut Vec<Frame>) {
        let mut s = String::with_capacity(96);
        match event {
            Event::Message(m) => {
                render_message(&mut s, m);
            }
            Event::Presence(p) => {
                let verb = match p.kind {
                    PresenceKind::Joined => "joined",
                    PresenceKind::Left => "left",
                };
                let _ = writeln!(s, "{verb} {} {} {}", p.room, p.member.name, p.members);
            }
            Event::Emit(e) => {
                // An event from another server: `event ROOM NAME: ARGS`.
                render_event(&mut s, e.room.as_deref().unwrap_or("*"), &e.event, &e.args);
            }
        }
        out.push(Frame::Text(Bytes::from(s)));
    }
}

/// `event ROOM NAME: JSON`, and a note for binary attachments.
fn render_event(s: &mut String, room: &str, event: &str, data: &Data) {
    let _ = write!(s, "event {room} {}: ", sanitize_for_line(event));
    s.push_str(&sanitize_for_line(data.json.get()));
    attachments_note(s, data);
    s.push('\n');
}

/// ` [+N binary attachments, B bytes]` when `data` has any.
fn attachments_note(s: &mut String, data: &Data) {
    let n = data.attachments.len();
    if n > 0 {
        let _ = write!(
            s,
            " [+{n} binary attachment{}, {} bytes]",
            if n == 1 { "" } else { "s" },
            data.attachment_bytes()
        );
    }
}

/// `msg ROOM OFFSET TIME FROM: TEXT`, and a note for non-text data; an
/// application's own event is `event ROOM NAME: JSON`, as events from other
/// servers are.
fn render_message(s: &mut String, m: &volna_hub::Message) {
    if let Some(event) = &m.event {
        render_event(s, &m.room, event, &m.data);
        return;
    }
    let _ = write!(
        s,
        "msg {} {} {} {}: ",
        m.room,
        m.offset,
        Timestamp(m.ts),
        m.from.name
    );
    if let Some(image) = crate::images::image_info(&m.data) {
        s.push_str(&sanitize_for_line(&crate::images::describe(&image)));
        s.push('\n');
        return;
    }
    match m.data.as_text() {
        Some(text) => s.push_str(&sanitize_for_line(&text)),
        None => s.push_str(&sanitize_for_line(m.data.json.get())),
    }
    attachments_note(s, &m.data);
    s.push('\n');
}

/// Accepts connections until `shutdown` is cancelled. Each connection runs in
/// a task tracked by `tracker`.
pub async fn serve(
    listener: TcpListener,
    app: app::Context,
    config: Arc<TcpConfig>,
    shutdown: CancellationToken,
    accepting: CancellationToken,
    tracker: TaskTracker,
) {
    let codec: Arc<dyn Codec> = Arc::new(LineCodec);
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = accepting.cancelled() => break,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((stream, peer)) => {
                let place = match app.ip_gate.admit(peer.ip()) {
                    Ok(place) => place,
                    Err(refusal) => {
                        app::count_bad_input(&app.hub);
                        if config.tls.is_none() {
                            let why = refusal.message();
                            let grace = config.close_grace;
                            tracker.spawn(async move { refuse(&stream.into(), why, grace).await });
                        }
                        continue;
                    }
                };
                let app = app.clone();
                let config = config.clone();
                let codec = codec.clone();
                let shutdown = shutdown.clone();
                tracker.spawn(async move {
                    let _place = place;
                    let stream = match &config.tls {
                        None => Wire::from(stream),
                        Some(tls) => match tls.accept_line(stream).await {
                            Ok(stream) => stream,
                            Err(e) => {
                                tracing::debug!(%peer, error = %e, "tls handshake failed");
                                return;
                            }
                        },
                    };
                    if let Err(e) = handle(stream, peer, app, config, codec, shutdown).await {
                        tracing::debug!(%peer, error = %e, "tcp connection ended with an error");
                    }
                });
            }
            Err(e) => {
                // Typically EMFILE/ENFILE: back off instead of spinning.
                tracing::warn!(error = %e, "tcp accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Tells a client it is refused (`error WHY`) and closes the connection.
async fn refuse(stream: &Wire, why: &str, grace: Duration) {
    let line = format!("error {}\n", sanitize_for_line(why));
    let _ = tokio::time::timeout(grace, async {
        stream.write_all(line.as_bytes()).await?;
        stream.shutdown().await
    })
    .await;
}

/// Serves one TCP client until it quits, disconnects or is disconnected.
async fn handle(
    stream: Wire,
    peer: SocketAddr,
    app: app::Context,
    config: Arc<TcpConfig>,
    codec: Arc<dyn Codec>,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let _ = stream.tcp().set_nodelay(true);
    let arrival = Arrival {
        client: app.hub.new_client_id(),
        transport: "tcp",
        protocol: "line",
        remote_addr: Some(peer),
        name: None,
        data: serde_json::Value::Null,
        headers: serde_json::Map::new(),
    };
    let grant = match admit::admit(&app, arrival).await {
        Ok(grant) => grant,
        Err(refusal) => {
            refuse(
                &stream,
                &format!("refused {}", refusal.reason),
                config.close_grace,
            )
            .await;
            return Ok(());
        }
    };
    let outbox = Arc::new(Outbox::new(config.outbox));
    let conn = grant.register(&app.hub, NAMESPACE, outbox.clone(), codec);
    tracing::debug!(%peer, id = conn.id(), "tcp client connected");
    let _ = outbox.push_one(Frame::text(format!(
        "welcome volna {}: you are {}. Type /help for commands, /join ROOM to start.\n",
        env!("CARGO_PKG_VERSION"),
        conn.name()
    )));
    let stream = Arc::new(stream);
    let mut writer = tokio::spawn(write_loop(
        stream.clone(),
        outbox.clone(),
        config.close_grace,
    ));
    let mut commands = Commands {
        conn: &conn,
        app: &app,
        config: &config,
        // A room the connect hook joined it to is its current room.
        current: conn.rooms().last().cloned(),
    };
    // Silent since it connected: closed once `first_line_timeout` passes.
    let lines_seen = AtomicBool::new(false);
    let first_line = async {
        match config.first_line_timeout {
            Some(limit) => tokio::time::sleep(limit).await,
            None => std::future::pending().await,
        }
        if lines_seen.load(Ordering::Relaxed) {
            std::future::pending::<()>().await;
        }
    };
    let read_result = tokio::select! {
        r = commands.read_loop(&stream, &lines_seen) => r,
        _ = first_line => {
            app::count_bad_input(&app.hub);
            outbox.close(CloseReason::Disconnected {
                code: 4408,
                reason: "idle: no line since you connected".into(),
            });
            Ok(())
        }
        _ = outbox.wait_closed() => Ok(()),
        _ = shutdown.cancelled() => {
            outbox.close(CloseReason::ServerShutdown);
            Ok(())
        }
    };
    match &read_result {
        Ok(()) => {
            outbox.close(CloseReason::TransportClosed);
        }
        Err(_) => {
            outbox.close(CloseReason::TransportClosed);
        }
    }
    // Leave the rooms now (others see `left` at once) but keep writing the
    // last frames to this client within the grace period.
    drop(conn);
    let _ = (&mut writer).await;
    read_result
}

/// The commands of one TCP connection: its reader's state.
struct Commands<'a> {
    conn: &'a Conn,
    app: &'a app::Context,
    config: &'a TcpConfig,
    /// The room plain lines go to.
    current: Option<Arc<str>>,
}

impl Commands<'_> {
    /// Reads and handles lines until EOF or `/quit`.
    async fn read_loop(&mut self, rd: &Wire, lines_seen: &AtomicBool) -> io::Result<()> {
        let mut splitter = LineSplitter::new(self.config.max_line);
        loop {
            let flush_partial = match (self.config.partial_line_flush, splitter.is_empty()) {
                (Some(wait), false) => match tokio::time::timeout(wait, rd.readable()).await {
                    Ok(ready) => {
                        ready?;
                        false
                    }
                    Err(_) => true,
                },
                _ => {
                    rd.readable().await?;
                    false
                }
            };
            let mut eof = false;
            if flush_partial {
                // Nothing more came for a while: the partial line is a line.
                splitter.push(b"\n");
            } else {
                match read_some(rd, &mut splitter) {
                    Ok(n) if n > 0 => {
                        self.app.hub.stats().received_bytes[0]
                            .fetch_add(n as u64, Ordering::Relaxed);
                    }
                    Ok(0) => {
                        // A last line without its newline still counts.
                        eof = true;
                        if !splitter.is_empty() {
                            splitter.push(b"\n");
                        }
                    }
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(e) => return Err(e),
                }
            }
            while let Some(item) = splitter.next_item() {
                lines_seen.store(true, Ordering::Relaxed);
                let parsed = match item {
                    Item::Line(bytes) => line::parse(bytes),
                    Item::TooLong => Err(line::LineError::TooLong {
                        limit: splitter.max(),
                    }),
                };
                let keep_going = match parsed {
                    Ok(cmd) => self.execute(cmd).await,
                    Err(e) => {
                        app::count_bad_input(self.conn.hub());
                        self.reply(format!("error {} {e}", e.code()))
                    }
                };
                if !keep_going {
                    return Ok(());
                }
            }
            if eof {
                return Ok(());
            }
        }
    }

    /// Queues one reply line; false if the connection is closing.
    fn reply(&self, mut line: String) -> bool {
        if !line.ends_with('\n') {
            line.push('\n');
        }
        self.conn.outbox().push_one(Frame::text(line)).is_ok()
    }

    /// `error CODE text`, counted as bad input.
    fn refuse(&self, code: &'static str, text: &str) -> bool {
        app::count_bad_input(self.conn.hub());
        self.reply(format!("error {code} {text}"))
    }

    /// Acts on one command; false once the connection should stop reading.
    /// Replies keep the order of the commands: an operation answered later
    /// (a cluster-wide `/who`) is awaited here.
    async fn execute(&mut self, cmd: Command) -> bool {
        let op = match cmd {
            Command::Empty => return true,
            Command::Help => return self.reply(HELP.to_string()),
            Command::Quit => {
                self.conn.close(CloseReason::ClientQuit);
                return false;
            }
            Command::Say(text) => match self.current.clone() {
                Some(room) => say(&room, &text),
                None => return self.refuse("not-in-room", "join a room first: /join ROOM"),
            },
            Command::SayTo { room, text } => say(&room, &text),
            Command::Nick(name) => Op::Nick { name },
            Command::Join(room) => Op::Join { room, since: None },
            Command::JoinSince {
                room,
                offset,
                epoch,
            } => Op::Join {
                room,
                since: Some(volna_hub::Since {
                    offset,
                    epoch,
                    log: None,
                }),
            },
            Command::Leave(room) => match room.map(Arc::from).or_else(|| self.current.clone()) {
                Some(room) => Op::Leave {
                    room: room.to_string(),
                },
                None => {
                    let e = HubError::NotMember("(none)".into());
                    return self.refuse(e.code(), &e.to_string());
                }
            },
            Command::Who(room) => match room.map(Arc::from).or_else(|| self.current.clone()) {
                Some(room) => Op::Who {
                    room: room.to_string(),
                },
                None => return self.refuse("not-in-room", "name a room: /who ROOM"),
            },
            Command::Rooms => Op::Rooms,
            Command::History(n) => match self.current.clone() {
                Some(room) => Op::History {
                    room: room.to_string(),
                    limit: n.unwrap_or(self.config.history_default),
                },
                None => return self.refuse("not-in-room", "join a room first: /join ROOM"),
            },
            Command::Echo(text) => Op::Echo {
                data: Data::text(&text),
            },
            Command::Auth(token) => Op::Auth {
                data: serde_json::json!({ "token": token }),
            },
            Command::Emit { event, json } => {
                let Some(room) = self.current.clone() else {
                    return self.refuse("not-in-room", "join a room first: /join ROOM");
                };
                let event = match app::event_name(&event) {
                    Ok(event) => event,
                    Err(e) => return self.refuse(e.code, &e.message),
                };
                let Ok(json) = serde_json::value::RawValue::from_string(json) else {
                    return self.refuse("bad-json", "the data after the event name must be JSON");
                };
                Op::Emit {
                    event,
                    room: room.to_string(),
                    data: Data {
                        json,
                        attachments: Vec::new(),
                    },
                    include_self: true,
                }
            }
        };
        let outcome = match op.apply(self.conn, self.app) {
            Applied::Now(outcome) => outcome,
            Applied::Later(answer) => answer.await,
        };
        match outcome {
            Ok(reply) => self.render(reply),
            Err(e) => self.reply(format!("error {} {}", e.code, e.message)),
        }
    }

    /// Writes a reply as protocol lines.
    fn render(&mut self, reply: Reply) -> bool {
        let line = match reply {
            // The sender receives its own message through the broadcast:
            // that is its reply, carrying the offset the server assigned.
            Reply::Published(_) => return true,
            Reply::Nick { name } => format!("ok nick {name}"),
            Reply::Join(info) => {
                self.current = Some(info.room.clone());
                let mut line = format!("ok join {}", info.room);
                for m in &info.members {
                    line.push(' ');
                    line.push_str(&m.name);
                }
                line
            }
            Reply::Leave { room, .. } => {
                if self.current.as_deref() == Some(&*room) {
                    self.current = self.conn.rooms().last().cloned();
                }
                match &self.current {
                    Some(cur) => format!("ok leave {room} current={cur}"),
                    None => format!("ok leave {room}"),
                }
            }
            Reply::Echo(data) => format!("ok echo {}", data.as_text().unwrap_or_default()),
            Reply::Who { room, who } => {
                let mut line = format!("ok who {room}");
                for m in &who.members {
                    line.push(' ');
                    line.push_str(&m.name);
                }
                if who.partial {
                    let _ = write!(
                        line,
                        "\nnote who {room} is partial: some nodes did not answer in time"
                    );
                }
                line
            }
            Reply::Rooms(rooms) => {
                let mut line = String::from("ok rooms");
                for r in rooms {
                    let _ = write!(line, " {}:{}", r.name, r.members);
                }
                line
            }
            Reply::Answered { event, data } => {
                format!("ok emit {event} {}", sanitize_for_line(data.json.get()))
            }
            Reply::Identified { user, name } => {
                format!("ok auth {} {name}", user.as_deref().unwrap_or("-"))
            }
            Reply::History { room, messages } => {
                let mut out = format!("ok history {room} {}\n", messages.len());
                for m in &messages {
                    render_message(&mut out, m);
                }
                out
            }
        };
        self.reply(line)
    }
}

/// A text line for `room`.
fn say(room: &str, text: &str) -> Op {
    Op::Message {
        room: room.to_string(),
        data: Data::text(text),
        include_self: true,
    }
}

/// Reads what is available without waiting into a stack buffer and feeds the
/// splitter. Kept out of the async function so the buffer is not part of the
/// task's state: an idle connection holds no read buffer.
fn read_some(rd: &Wire, splitter: &mut LineSplitter) -> io::Result<usize> {
    let mut buf = [0u8; 8192];
    let (n, _) = rd.try_read(&mut buf)?;
    splitter.push(&buf[..n]);
    Ok(n)
}

/// Writes the outbox to the socket until it closes.
async fn write_loop(wr: Arc<Wire>, outbox: Arc<Outbox>, grace: Duration) {
    let mut batch: Vec<Frame> = Vec::new();
    let mut pending: VecDeque<Bytes> = VecDeque::new();
    let reason = loop {
        match outbox.next_batch(&mut batch).await {
            Batch::Frames => {
                pending.extend(batch.drain(..).map(|f| f.bytes().clone()));
                let written = tokio::select! {
                    r = write_all(&wr, &mut pending) => r,
                    reason = outbox.wait_closed() => {
                        if reason.discards_queue() {
                            // Finish the frame in flight so the line framing
                            // stays intact, drop the rest.
                            pending.truncate(1);
                        }
                        Ok(())
                    }
                };
                if written.is_err() {
                    return;
                }
                if pending.capacity() > 64 {
                    pending = VecDeque::new();
                }
            }
            Batch::Closed(reason) => {
                pending.extend(batch.drain(..).map(|f| f.bytes().clone()));
                break reason;
            }
        }
    };
    if reason != CloseReason::TransportClosed {
        pending.push_back(Bytes::from(format!("bye {reason}\n")));
    }
    let _ = tokio::time::timeout(grace, async {
        if write_all(&wr, &mut pending).await.is_ok() {
            let _ = wr.shutdown().await;
        }
    })
    .await;
}

/// Writes every pending buffer, several per syscall. Progress is recorded in
/// `pending` after each write, so the future may be dropped at any await
/// point without losing track of what was sent.
async fn write_all(wr: &Wire, pending: &mut VecDeque<Bytes>) -> io::Result<()> {
    while !pending.is_empty() {
        let written = {
            let slices: Vec<IoSlice<'_>> =
                pending.iter().take(64).map(|b| IoSlice::new(b)).collect();
            wr.try_write_vectored(&slices)
        };
        let n = match written {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                wr.writable().await?;
                continue;
            }
            Err(e) => return Err(e),
        };
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        let mut left = n;
        while left > 0 {
            let front = pending.front_mut().expect("wrote more than pending");
            if front.len() <= left {
                left -= front.len();
                pending.pop_front();
            } else {
                front.advance(left);
                left = 0;
            }
        }
    }
    wr.flush().await
}
