//! The raw TCP line protocol.
//!
//! A client sends UTF-8 lines ending in `\n` (a `\r` before it is dropped).
//! A line that starts with `/` is a command, any other non-empty line is a
//! message to the client's current room. `//text` sends the message `/text`.
//! The full protocol, including what the server sends back, is documented in
//! `docs/tcp-protocol.md`.
//!
//! Two pieces live here, both free of I/O:
//! - [`LineSplitter`] cuts an incoming byte stream into lines no longer than
//!   a limit. An over-long line is reported once and skipped up to its end, so
//!   the connection stays usable.
//! - [`parse`] turns one line into a [`Command`] or a [`LineError`].
//!
//! ```
//! use volna_protocols::line::{parse, Command};
//! assert_eq!(parse(b"/join lobby").unwrap(), Command::Join("lobby".into()));
//! assert_eq!(parse(b"hello").unwrap(), Command::Say("hello".into()));
//! ```

use std::fmt;

/// The longest room or nick name, in bytes.
pub const MAX_NAME_LEN: usize = 64;

/// A command sent by a TCP client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// A message to the current room.
    Say(String),
    /// `/msg ROOM text`: a message to a room the client is in, without
    /// changing the current room.
    SayTo {
        /// The room to send to; a valid name (see [`validate_name`]).
        room: String,
        /// The message, leading blanks trimmed; never empty.
        text: String,
    },
    /// `/nick NAME`.
    Nick(String),
    /// `/join ROOM`: join (creating it if needed) and make it current.
    Join(String),
    /// `/join ROOM since OFFSET [EPOCH]`: join and resume: first the
    /// messages after `OFFSET` (of the room's life `EPOCH`, when given).
    JoinSince {
        /// The room; a valid name.
        room: String,
        /// The last offset the client has.
        offset: u64,
        /// The room's epoch that offset belongs to.
        epoch: Option<String>,
    },
    /// `/leave [ROOM]`: leave the given room, or the current one.
    Leave(Option<String>),
    /// `/who [ROOM]`: members of the given room, or of the current one.
    Who(Option<String>),
    /// `/rooms`: every room with its member count.
    Rooms,
    /// `/history [N]`: the last N messages of the current room.
    History(Option<usize>),
    /// `/echo text`: the server answers with the same text.
    Echo(String),
    /// `/emit EVENT JSON`: the application's own event to the current room.
    /// The name is one word (checked further by the server); the JSON is
    /// passed on as written (checked by the server).
    Emit {
        /// The event's name.
        event: String,
        /// Its data, JSON text; never empty.
        json: String,
    },
    /// `/auth TOKEN`: sign in (the server's connect hook decides).
    Auth(String),
    /// `/help`.
    Help,
    /// `/quit`.
    Quit,
    /// An empty or blank line: ignored.
    Empty,
}

/// Why a line could not be turned into a [`Command`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    /// The line exceeded the splitter's bound (reported by the transport
    /// from [`Item::TooLong`], not by [`parse`]).
    #[error("line is longer than {limit} bytes")]
    TooLong {
        /// The bound, in bytes.
        limit: usize,
    },
    /// The line is not UTF-8.
    #[error("line is not valid UTF-8 (byte {valid_up_to})")]
    InvalidUtf8 {
        /// Byte offset of the first invalid sequence.
        valid_up_to: usize,
    },
    /// `/name` is no known command; holds the name as typed, cut to 32
    /// characters (with `…` when cut).
    #[error("unknown command /{0} (try /help)")]
    UnknownCommand(String),
    /// A command was given without the argument it requires.
    #[error("/{command} needs {what}")]
    MissingArgument {
        /// The command's canonical name, without the slash (`nick`, `join`,
        /// `msg`).
        command: &'static str,
        /// What is missing, as a phrase for the message ("a room name").
        what: &'static str,
    },
    /// A room or nick argument is not a valid name.
    #[error("{0}")]
    BadName(NameError),
    /// `/history` with something other than a number from 1 to 1000; holds
    /// the argument as given.
    #[error("/history takes a number from 1 to 1000, not {0:?}")]
    BadCount(String),
    /// The line holds control characters other than tab (a trailing `\r`
    /// is stripped first).
    #[error("line contains control characters")]
    ControlCharacters,
}

impl LineError {
    /// A short, stable code for the error, sent before the human text in an
    /// `error` line so that programs can match on it.
    pub fn code(&self) -> &'static str {
        match self {
            LineError::TooLong { .. } => "line-too-long",
            LineError::InvalidUtf8 { .. } => "invalid-utf8",
            LineError::UnknownCommand(_) => "unknown-command",
            LineError::MissingArgument { .. } => "missing-argument",
            LineError::BadName(_) => "bad-name",
            LineError::BadCount(_) => "bad-argument",
            LineError::ControlCharacters => "control-characters",
        }
    }
}

/// Why a room or nick name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The name is empty.
    #[error("name is empty")]
    Empty,
    /// The name is longer than [`MAX_NAME_LEN`] bytes.
    #[error("name is longer than {MAX_NAME_LEN} bytes")]
    TooLong,
    /// The name holds a character outside letters, digits and `-_.#@`;
    /// holds the whole name.
    #[error("name {0:?} may only hold letters, digits and - _ . # @")]
    BadCharacter(String),
}

/// Checks a room or nick name: 1 to [`MAX_NAME_LEN`] bytes of letters,
/// digits and `-_.#@`. Other transports use the same rule so that every
/// client can type every room's name.
pub fn validate_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong);
    }
    if !name
        .chars()
        .all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | '#' | '@'))
    {
        return Err(NameError::BadCharacter(name.to_string()));
    }
    Ok(())
}

/// Checks a room name: as [`validate_name`], and `:` is allowed too, for
/// namespaced rooms such as `doc:1` or `news:sport`.
pub fn validate_room(name: &str) -> Result<(), NameError> {
    match validate_name(&name.replace(':', "_")) {
        Err(NameError::BadCharacter(_)) => Err(NameError::BadCharacter(name.to_string())),
        other => other,
    }
}

/// Parses one line (without its line ending) into a command.
pub fn parse(line: &[u8]) -> Result<Command, LineError> {
    let line = std::str::from_utf8(line).map_err(|e| LineError::InvalidUtf8 {
        valid_up_to: e.valid_up_to(),
    })?;
    let line = line.strip_suffix('\r').unwrap_or(line);
    if line.chars().any(|c| c.is_control() && c != '\t') {
        return Err(LineError::ControlCharacters);
    }
    if line.trim().is_empty() {
        return Ok(Command::Empty);
    }
    let Some(rest) = line.strip_prefix('/') else {
        return Ok(Command::Say(line.to_string()));
    };
    if rest.starts_with('/') {
        return Ok(Command::Say(rest.to_string()));
    }
    let (name, args) = match rest.split_once([' ', '\t']) {
        Some((name, args)) => (name, args.trim()),
        None => (rest, ""),
    };
    // Rooms allow `:` as well; a nick with one is refused by the hub.
    let one_name = |command: &'static str, what: &'static str| -> Result<String, LineError> {
        if args.is_empty() {
            return Err(LineError::MissingArgument { command, what });
        }
        validate_room(args).map_err(LineError::BadName)?;
        Ok(args.to_string())
    };
    let optional_name = || -> Result<Option<String>, LineError> {
        if args.is_empty() {
            Ok(None)
        } else {
            validate_room(args).map_err(LineError::BadName)?;
            Ok(Some(args.to_string()))
        }
    };
    match name.to_ascii_lowercase().as_str() {
        "nick" | "name" => one_name("nick", "a name").map(Command::Nick),
        "join" | "j" => {
            let words: Vec<&str> = args.split_whitespace().collect();
            match words.as_slice() {
                [room, since, offset, epoch @ ..]
                    if since.eq_ignore_ascii_case("since") && epoch.len() <= 1 =>
                {
                    validate_room(room).map_err(LineError::BadName)?;
                    let offset = offset
                        .parse::<u64>()
                        .map_err(|_| LineError::BadCount(offset.to_string()))?;
                    Ok(Command::JoinSince {
                        room: room.to_string(),
                        offset,
                        epoch: epoch.first().map(|e| e.to_string()),
                    })
                }
                // Anything else is one name (refused if it has blanks).
                _ => one_name("join", "a room name").map(Command::Join),
            }
        }
        "leave" | "part" => optional_name().map(Command::Leave),
        "who" | "names" => optional_name().map(Command::Who),
        "rooms" | "list" => Ok(Command::Rooms),
        "msg" => {
            let Some((room, text)) = args.split_once([' ', '\t']) else {
                return Err(LineError::MissingArgument {
                    command: "msg",
                    what: "a room and a message",
                });
            };
            validate_room(room).map_err(LineError::BadName)?;
            let text = text.trim_start();
            if text.is_empty() {
                return Err(LineError::MissingArgument {
                    command: "msg",
                    what: "a message after the room",
                });
            }
            Ok(Command::SayTo {
                room: room.to_string(),
                text: text.to_string(),
            })
        }
        "history" => {
            if args.is_empty() {
                return Ok(Command::History(None));
            }
            match args.parse::<usize>() {
                Ok(n) if (1..=1000).contains(&n) => Ok(Command::History(Some(n))),
                _ => Err(LineError::BadCount(args.to_string())),
            }
        }
        "echo" => Ok(Command::Echo(args.to_string())),
        "emit" => {
            let Some((event, json)) = args.split_once([' ', '\t']) else {
                return Err(LineError::MissingArgument {
                    command: "emit",
                    what: "an event name and its JSON data",
                });
            };
            Ok(Command::Emit {
                event: event.to_string(),
                json: json.trim_start().to_string(),
            })
        }
        "auth" | "login" => {
            if args.is_empty() {
                return Err(LineError::MissingArgument {
                    command: "auth",
                    what: "a token",
                });
            }
            Ok(Command::Auth(args.to_string()))
        }
        "help" | "?" => Ok(Command::Help),
        "quit" | "exit" | "bye" => Ok(Command::Quit),
        _ => {
            let mut shown: String = name.chars().take(32).collect();
            if shown.len() < name.len() {
                shown.push('…');
            }
            Err(LineError::UnknownCommand(shown))
        }
    }
}

/// One item cut from the stream by [`LineSplitter`].
#[derive(Debug, PartialEq, Eq)]
pub enum Item<'a> {
    /// A complete line, without its `\n`.
    Line(&'a [u8]),
    /// A line longer than the limit was skipped. Reported once per line, as
    /// soon as the limit is crossed; the rest of it is discarded.
    TooLong,
}

/// Cuts a byte stream into lines of at most `max` bytes (not counting the
/// `\n`).
///
/// Feed it with [`LineSplitter::push`], then take items with
/// [`LineSplitter::next_item`] until it returns `None`. It keeps only the bytes
/// of an unfinished line, so an idle connection holds no buffer at all.
#[derive(Debug)]
pub struct LineSplitter {
    max: usize,
    buf: Vec<u8>,
    /// Bytes of `buf` already handed out; compacted on the next push.
    consumed: usize,
    /// True while skipping the rest of an over-long line.
    discarding: bool,
}

impl LineSplitter {
    /// A splitter for lines of at most `max` bytes.
    pub fn new(max: usize) -> Self {
        LineSplitter {
            max: max.max(1),
            buf: Vec::new(),
            consumed: 0,
            discarding: false,
        }
    }

    /// The line length limit.
    pub fn max(&self) -> usize {
        self.max
    }

    /// True when no partial line is held.
    pub fn is_empty(&self) -> bool {
        self.buf.len() == self.consumed && !self.discarding
    }

    /// Appends bytes read from the stream.
    pub fn push(&mut self, data: &[u8]) {
        if self.consumed > 0 {
            self.buf.drain(..self.consumed);
            self.consumed = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// The next complete line or error, or `None` when more bytes are needed.
    pub fn next_item(&mut self) -> Option<Item<'_>> {
        loop {
            let pending = &self.buf[self.consumed..];
            if pending.is_empty() {
                self.release();
                return None;
            }
            match memchr::memchr(b'\n', pending) {
                Some(pos) if self.discarding => {
                    self.discarding = false;
                    self.consumed += pos + 1;
                    continue;
                }
                Some(pos) => {
                    let start = self.consumed;
                    self.consumed += pos + 1;
                    let mut line = &self.buf[start..start + pos];
                    if line.last() == Some(&b'\r') {
                        line = &line[..line.len() - 1];
                    }
                    if line.len() > self.max {
                        return Some(Item::TooLong);
                    }
                    return Some(Item::Line(line));
                }
                None if self.discarding => {
                    self.consumed = self.buf.len();
                    self.release();
                    return None;
                }
                None => {
                    // Allow one byte for a `\r` that may precede the `\n`.
                    if pending.len() > self.max + 1 {
                        self.discarding = true;
                        self.consumed = self.buf.len();
                        self.release();
                        return Some(Item::TooLong);
                    }
                    return None;
                }
            }
        }
    }

    /// Frees the buffer once everything in it has been handed out, so that an
    /// idle connection keeps no allocation.
    fn release(&mut self) {
        if self.consumed == self.buf.len() {
            self.consumed = 0;
            if self.buf.capacity() > 1024 {
                self.buf = Vec::new();
            } else {
                self.buf.clear();
            }
        }
    }
}

/// A timestamp in milliseconds since the Unix epoch, formatted as
/// `2026-11-25T10:11:12.345Z` (UTC) for the line protocol.
pub struct Timestamp(pub u64);

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0 % 1000;
        let secs = self.0 / 1000;
        let (h, m, s) = ((secs / 3600) % 24, (secs / 60) % 60, secs % 60);
        let (y, mo, d) = civil_from_days((secs / 86_400) as i64);
        write!(f, "{y:04}-{mo:02}-{d:02}T{h:02}:{m:02}:{s:02}.{ms:03}Z")
    }
}

/// Converts days since 1970-01-01 to a (year, month, day) date in the
/// proleptic Gregorian calendar (the well-known "days from civil" inverse).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Replaces characters that would break the one-line-per-message framing
/// (newlines, other control characters) with spaces, for text that came from
/// another transport.
pub fn sanitize_for_line(text: &str) -> std::borrow::Cow<'_, str> {
    if text.chars().any(|c| c.is_control() && c != '\t') {
        text.chars()
            .map(|c| if c.is_control() && c != '\t' { ' ' } else { c })
            .collect::<String>()
            .into()
    } else {
        text.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(s: &mut LineSplitter) -> Vec<Result<String, ()>> {
        let mut out = Vec::new();
        while let Some(item) = s.next_item() {
            out.push(match item {
                Item::Line(l) => Ok(String::from_utf8_lossy(l).into_owned()),
                Item::TooLong => Err(()),
            });
        }
        out
    }

    #[test]
    fn commands() {
        assert_eq!(parse(b"hi there").unwrap(), Command::Say("hi there".into()));
        assert_eq!(
            parse(b"//me waves").unwrap(),
            Command::Say("/me waves".into())
        );
        assert_eq!(parse(b"/nick bob").unwrap(), Command::Nick("bob".into()));
        assert_eq!(parse(b"/JOIN  a.b ").unwrap(), Command::Join("a.b".into()));
        assert_eq!(
            parse(b"/join lobby since 17 e-1").unwrap(),
            Command::JoinSince {
                room: "lobby".into(),
                offset: 17,
                epoch: Some("e-1".into())
            }
        );
        assert_eq!(
            parse(b"/join lobby since 0").unwrap(),
            Command::JoinSince {
                room: "lobby".into(),
                offset: 0,
                epoch: None
            }
        );
        assert!(parse(b"/join lobby since x").is_err());
        assert!(parse(b"/join lobby extra").is_err());
        assert_eq!(parse(b"/leave").unwrap(), Command::Leave(None));
        assert_eq!(
            parse(b"/leave x").unwrap(),
            Command::Leave(Some("x".into()))
        );
        assert_eq!(parse(b"/who").unwrap(), Command::Who(None));
        assert_eq!(parse(b"/rooms").unwrap(), Command::Rooms);
        assert_eq!(parse(b"/history 5").unwrap(), Command::History(Some(5)));
        assert_eq!(parse(b"/echo  a b").unwrap(), Command::Echo("a b".into()));
        assert_eq!(parse(b"/quit").unwrap(), Command::Quit);
        assert_eq!(
            parse(b"/auth t0k.en").unwrap(),
            Command::Auth("t0k.en".into())
        );
        assert!(matches!(
            parse(b"/auth"),
            Err(LineError::MissingArgument {
                command: "auth",
                ..
            })
        ));
        assert_eq!(parse(b"   ").unwrap(), Command::Empty);
        assert_eq!(parse(b"hi\r").unwrap(), Command::Say("hi".into()));
        assert_eq!(
            parse(b"/emit cursor {\"x\": 1}").unwrap(),
            Command::Emit {
                event: "cursor".into(),
                json: "{\"x\": 1}".into()
            }
        );
        assert!(matches!(
            parse(b"/emit cursor"),
            Err(LineError::MissingArgument {
                command: "emit",
                ..
            })
        ));
        assert_eq!(
            parse(b"/msg room1 hello you").unwrap(),
            Command::SayTo {
                room: "room1".into(),
                text: "hello you".into()
            }
        );
    }

    #[test]
    fn errors() {
        assert_eq!(
            parse(b"/frobnicate x").unwrap_err(),
            LineError::UnknownCommand("frobnicate".into())
        );
        assert!(matches!(
            parse(b"/join").unwrap_err(),
            LineError::MissingArgument {
                command: "join",
                ..
            }
        ));
        assert!(matches!(
            parse(b"/join a b").unwrap_err(),
            LineError::BadName(NameError::BadCharacter(_))
        ));
        assert!(matches!(
            parse(b"hi \xff there").unwrap_err(),
            LineError::InvalidUtf8 { valid_up_to: 3 }
        ));
        assert_eq!(parse(b"a\x07b").unwrap_err(), LineError::ControlCharacters);
        assert_eq!(
            parse(b"/history 0").unwrap_err(),
            LineError::BadCount("0".into())
        );
        let long = format!("/join {}", "x".repeat(65));
        assert_eq!(
            parse(long.as_bytes()).unwrap_err(),
            LineError::BadName(NameError::TooLong)
        );
        assert_eq!(parse(b"/msg r").unwrap_err().code(), "missing-argument");
    }

    #[test]
    fn splitter_basic_and_partial() {
        let mut s = LineSplitter::new(10);
        s.push(b"ab\ncd");
        assert_eq!(items(&mut s), vec![Ok("ab".into())]);
        assert!(!s.is_empty());
        s.push(b"e\r\n\n");
        assert_eq!(items(&mut s), vec![Ok("cde".into()), Ok("".into())]);
        assert!(s.is_empty());
        assert!(s.buf.capacity() <= 1024);
    }

    #[test]
    fn splitter_too_long_recovers() {
        let mut s = LineSplitter::new(4);
        s.push(b"12345678");
        assert_eq!(items(&mut s), vec![Err(())]);
        s.push(b"9999");
        assert_eq!(items(&mut s), vec![]);
        s.push(b"00\nok\n");
        assert_eq!(items(&mut s), vec![Ok("ok".into())]);
        // Exactly at the limit, with and without \r.
        s.push(b"1234\n1234\r\n12345\n");
        assert_eq!(
            items(&mut s),
            vec![Ok("1234".into()), Ok("1234".into()), Err(())]
        );
    }

    #[test]
    fn timestamps() {
        assert_eq!(Timestamp(0).to_string(), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            Timestamp(1_764_065_472_345).to_string(),
            "2025-11-25T10:11:12.345Z"
        );
        assert_eq!(
            Timestamp(951_782_400_000).to_string(),
            "2000-02-29T00:00:00.000Z"
        );
    }

    #[test]
    fn sanitize() {
        assert_eq!(sanitize_for_line("a\nb\rc"), "a b c");
        assert!(matches!(
            sanitize_for_line("ok"),
            std::borrow::Cow::Borrowed(_)
        ));
    }
}
