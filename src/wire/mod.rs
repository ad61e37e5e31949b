//! Pure parsers and emitters for the bytes that cross the wire.
//!
//! Everything under `wire` works on byte slices only: no sockets, no files, no clocks,
//! no logging, and no allocation on the success path. Every parser answers one of three
//! things (see [`Parsed`]): complete (the value and how many bytes it took), need more
//! bytes, or invalid with a small `Copy` reason. None may panic on any input, none trusts
//! a length field: lengths are read through [`reader::Reader`], which cannot overrun.
//! The same code serves the proxy, `sluice inspect`, the tests and the fuzzers.

pub mod crc32c;
pub mod http;
pub mod name;
pub mod proxy;
pub mod reader;
pub mod tls;
pub mod writer;

/// The outcome of running a parser over the bytes received so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed<T, E> {
    /// A whole value, and the number of bytes of the input it took.
    Complete(T, usize),
    /// The input is a valid prefix: read more and call again with all of it.
    NeedMore,
    /// The input can never become valid, whatever follows.
    Invalid(E),
}

impl<T, E> Parsed<T, E> {
    /// Applies `f` to a complete value, keeping the outcome otherwise.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Parsed<U, E> {
        match self {
            Parsed::Complete(v, n) => Parsed::Complete(f(v), n),
            Parsed::NeedMore => Parsed::NeedMore,
            Parsed::Invalid(e) => Parsed::Invalid(e),
        }
    }

    /// Converts the error type, keeping the outcome otherwise.
    pub fn map_err<F>(self, f: impl FnOnce(E) -> F) -> Parsed<T, F> {
        match self {
            Parsed::Complete(v, n) => Parsed::Complete(v, n),
            Parsed::NeedMore => Parsed::NeedMore,
            Parsed::Invalid(e) => Parsed::Invalid(f(e)),
        }
    }

    /// True for [`Parsed::NeedMore`].
    pub fn is_need_more(&self) -> bool {
        matches!(self, Parsed::NeedMore)
    }
}
