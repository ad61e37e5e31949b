//! The controlling terminal for `sluice ctl top`: raw mode (termios), its size (TIOCGWINSZ)
//! and waiting for a key with a timeout (poll). Raw mode is undone when the guard drops, so
//! a return or a panic leaves the terminal as it was. Nothing here draws.

use std::io;
use std::os::fd::RawFd;

/// The terminal in raw mode; its old settings come back on drop.
pub struct RawMode {
    fd: RawFd,
    saved: libc::termios,
}

impl RawMode {
    /// Puts the terminal on `fd` in raw mode: keys arrive one by one, unechoed, and Ctrl-C
    /// is a byte (0x03) rather than a signal, so that the caller quits cleanly on it.
    pub fn enter(fd: RawFd) -> io::Result<RawMode> {
        // SAFETY: a zeroed termios is a valid value for tcgetattr to fill.
        let mut saved: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: `saved` is a valid, writable termios.
        if unsafe { libc::tcgetattr(fd, &mut saved) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let mut raw = saved;
        raw.c_lflag &= !(libc::ICANON | libc::ECHO | libc::ISIG | libc::IEXTEN);
        raw.c_iflag &= !(libc::IXON | libc::ICRNL);
        if let Some(c) = raw.c_cc.get_mut(libc::VMIN) {
            *c = 1;
        }
        if let Some(c) = raw.c_cc.get_mut(libc::VTIME) {
            *c = 0;
        }
        // SAFETY: `raw` is a valid termios copied from the terminal's own.
        if unsafe { libc::tcsetattr(fd, libc::TCSANOW, &raw) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(RawMode { fd, saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // SAFETY: `saved` is what tcgetattr returned for this descriptor.
        unsafe { libc::tcsetattr(self.fd, libc::TCSANOW, &self.saved) };
    }
}

/// True when `fd` is a terminal.
pub fn is_terminal(fd: RawFd) -> bool {
    // SAFETY: isatty only reads the descriptor's kind.
    unsafe { libc::isatty(fd) == 1 }
}

/// The terminal's size as (columns, rows), when `fd` is one that knows it.
pub fn size(fd: RawFd) -> Option<(u16, u16)> {
    // SAFETY: a zeroed winsize is valid; TIOCGWINSZ fills it.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: `ws` is a valid, writable winsize for this request.
    let r = unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) };
    (r == 0 && ws.ws_col > 0 && ws.ws_row > 0).then_some((ws.ws_col, ws.ws_row))
}

/// Waits up to `timeout_ms` for `fd` to be readable; true when it is.
pub fn readable_within(fd: RawFd, timeout_ms: i32) -> io::Result<bool> {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, its count 1.
    let n = unsafe { libc::poll(&mut p, 1, timeout_ms) };
    match n {
        n if n < 0 => {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                Ok(false)
            } else {
                Err(e)
            }
        }
        0 => Ok(false),
        _ => Ok(true),
    }
}
