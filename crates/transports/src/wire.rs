//! A connection's byte stream: a `TcpStream`, plain or carrying a TLS
//! session, used by readiness (`try_read`/`try_write` and waiting for the
//! socket) the same way in both cases.
//!
//! The WebSocket and TCP line transports write from whichever task has
//! frames and never hold a buffer while idle; a TLS session fits that
//! model once the handshake is over: rustls is a state machine fed with
//! the socket's bytes, so reading is "pull ciphertext, hand out plaintext"
//! and writing is "encrypt, push ciphertext", each without waiting. The
//! only new state is ciphertext that did not fit in the socket: a write
//! refuses more plaintext until it is out, and [`Wire::flush`] waits for
//! it (the transports call it after every batch, so nothing accepted stays
//! behind).

use std::future::poll_fn;
use std::io::{self, IoSlice, Read, Write};
use std::net::Shutdown;
use std::sync::Mutex;
use std::task::Poll;

use rustls::ServerConnection;
use tokio::net::TcpStream;

/// A connection's stream; see the module documentation.
pub struct Wire {
    tcp: TcpStream,
    tls: Option<Box<Mutex<ServerConnection>>>,
}

impl From<TcpStream> for Wire {
    fn from(tcp: TcpStream) -> Wire {
        Wire { tcp, tls: None }
    }
}

/// The socket as blocking-style `Read`/`Write` that say `WouldBlock`
/// instead of waiting (tokio's readiness kept right), for rustls.
struct Nonblocking<'a>(&'a TcpStream);

impl Read for Nonblocking<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.try_read(buf)
    }
}

impl Write for Nonblocking<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.try_write(buf)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.0.try_write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Wire {
    /// A stream carrying an established TLS session (the handshake done,
    /// e.g. by `tokio_rustls`; any plaintext it already read stays in the
    /// session and is read first).
    pub fn tls(tcp: TcpStream, session: ServerConnection) -> Wire {
        Wire {
            tcp,
            tls: Some(Box::new(Mutex::new(session))),
        }
    }

    /// The TCP socket underneath.
    pub fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    /// Whether it carries TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Waits until a read may find bytes. Unlike `TcpStream::readable`,
    /// whose future carries its own waiter (~150 bytes in every idle
    /// connection's task), this parks the task's waker in the slot the
    /// stream's registration already has. Only one task may wait at a
    /// time: the reader.
    pub async fn readable(&self) -> io::Result<()> {
        poll_fn(|cx| {
            if self.has_plaintext() {
                return Poll::Ready(Ok(()));
            }
            self.tcp.poll_read_ready(cx)
        })
        .await
    }

    /// [`readable`](Wire::readable) for writing; only the writer waits.
    pub async fn writable(&self) -> io::Result<()> {
        poll_fn(|cx| self.tcp.poll_write_ready(cx)).await
    }

    /// Decrypted bytes wait in the TLS session.
    fn has_plaintext(&self) -> bool {
        self.tls.as_ref().is_some_and(|tls| {
            let mut session = tls.lock().unwrap();
            session
                .process_new_packets()
                .is_ok_and(|state| state.plaintext_bytes_to_read() > 0)
        })
    }

    /// One read without waiting: `Ok((n, drained))`, `n == 0` at the end
    /// of the stream; `drained` when the socket is known to be empty now
    /// (a plain read shorter than `buf`: the readiness is cleared at once
    /// rather than by a second `recv` that would only say `EAGAIN`).
    /// `WouldBlock` when there is nothing to read.
    pub fn try_read(&self, buf: &mut [u8]) -> io::Result<(usize, bool)> {
        let Some(tls) = &self.tls else {
            return self.read_plain(buf);
        };
        let mut session = tls.lock().unwrap();
        loop {
            match session.reader().read(buf) {
                Ok(n) => return Ok((n, false)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // The peer went without a close_notify: the end all the same.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok((0, false)),
                Err(e) => return Err(e),
            }
            if session.read_tls(&mut Nonblocking(&self.tcp))? == 0 {
                return Ok((0, false));
            }
            if let Err(e) = session.process_new_packets() {
                // Tell the peer (an alert) before giving up.
                let _ = session.write_tls(&mut Nonblocking(&self.tcp));
                return Err(io::Error::new(io::ErrorKind::InvalidData, e));
            }
            // Answers the session owes (e.g. to a key update) go out now.
            if session.wants_write() {
                let _ = flush_session(&mut session, &self.tcp);
            }
        }
    }

    /// The plain read: a `recv` with the short-read rule of [`try_read`].
    ///
    /// This is race-free: the readiness snapshot is taken before the
    /// `recv`, and tokio only clears it if no readiness event arrived
    /// since, so bytes landing after the `recv` still wake the reader.
    fn read_plain(&self, buf: &mut [u8]) -> io::Result<(usize, bool)> {
        let mut short = 0;
        let result = self.tcp.try_io(tokio::io::Interest::READABLE, || {
            let n = io::Read::read(&mut &*socket2::SockRef::from(&self.tcp), buf)?;
            if n > 0 && n < buf.len() {
                short = n;
                return Err(io::ErrorKind::WouldBlock.into());
            }
            Ok(n)
        });
        match result {
            Ok(n) => Ok((n, false)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && short > 0 => Ok((short, true)),
            Err(e) => Err(e),
        }
    }

    /// One write of `bytes` without waiting. A plain one is a `send(2)`,
    /// which goes straight to the socket layer (`write(2)` costs a
    /// file-position lock on top).
    pub fn try_send(&self, bytes: &[u8]) -> io::Result<usize> {
        if self.tls.is_some() {
            return self.try_write_vectored(&[IoSlice::new(bytes)]);
        }
        self.tcp.try_io(tokio::io::Interest::WRITABLE, || {
            socket2::SockRef::from(&self.tcp).send(bytes)
        })
    }

    /// One vectored write without waiting. Over TLS the count is the
    /// plaintext taken: its ciphertext may still be on its way
    /// ([`flush`](Wire::flush)).
    pub fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let Some(tls) = &self.tls else {
            return self.tcp.try_write_vectored(bufs);
        };
        let mut session = tls.lock().unwrap();
        // Older ciphertext first; no more plaintext while it waits.
        flush_session(&mut session, &self.tcp)?;
        let taken = session.writer().write_vectored(bufs)?;
        match flush_session(&mut session, &self.tcp) {
            Err(e) if e.kind() != io::ErrorKind::WouldBlock => return Err(e),
            _ => {}
        }
        if taken == 0 && bufs.iter().any(|b| !b.is_empty()) {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(taken)
    }

    /// Whether written bytes still wait to go out (always false for a
    /// plain stream: the kernel has what `try_*` accepted).
    pub fn has_pending(&self) -> bool {
        self.tls
            .as_ref()
            .is_some_and(|tls| tls.lock().unwrap().wants_write())
    }

    /// Waits until everything written is on the socket.
    pub async fn flush(&self) -> io::Result<()> {
        let Some(tls) = &self.tls else {
            return Ok(());
        };
        loop {
            let flushed = flush_session(&mut tls.lock().unwrap(), &self.tcp);
            match flushed {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.writable().await?,
                Err(e) => return Err(e),
            }
        }
    }

    /// Writes all of `bytes`, waiting for the socket as needed.
    pub async fn write_all(&self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            match self.try_send(bytes) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => bytes = &bytes[n..],
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.writable().await?,
                Err(e) => return Err(e),
            }
        }
        self.flush().await
    }

    /// Ends the sending side: a TLS close_notify, then a TCP FIN.
    pub async fn shutdown(&self) -> io::Result<()> {
        if let Some(tls) = &self.tls {
            tls.lock().unwrap().send_close_notify();
            self.flush().await?;
        }
        socket2::SockRef::from(&self.tcp).shutdown(Shutdown::Write)
    }
}

/// Writes the session's ciphertext until none is left (`Ok`) or the
/// socket is full (`WouldBlock`).
fn flush_session(session: &mut ServerConnection, tcp: &TcpStream) -> io::Result<()> {
    while session.wants_write() {
        if session.write_tls(&mut Nonblocking(tcp))? == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
    }
    Ok(())
}
