//! Session tokens: a session's slab key with the leg packed into the low bit, so that an
//! event finds its session and socket in O(1).
//!
//! Only the packing lives here; the reserved tokens of the listeners and admin connections
//! are the event loop's (`worker`). Never a token at or above `ADMIN_BASE`: session keys stay
//! far below it (the slab never holds that many sessions).

use mio::Token;

/// Which socket of a session an event is for. Packed into the low bit of the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leg {
    /// The accepted connection (from the load balancer or the client).
    Client = 0,
    /// The connection sluice opened.
    Upstream = 1,
}

/// The token for `leg` of the session at slab `key`.
pub fn token(key: usize, leg: Leg) -> Token {
    Token(key << 1 | leg as usize)
}

/// The slab key and leg of a session token.
pub fn untoken(t: Token) -> (usize, Leg) {
    (
        t.0 >> 1,
        if t.0 & 1 == 0 {
            Leg::Client
        } else {
            Leg::Upstream
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_gives_back_its_key_and_leg() {
        for key in [0, 1, 2, 1000, usize::MAX >> 3] {
            for leg in [Leg::Client, Leg::Upstream] {
                assert_eq!(untoken(token(key, leg)), (key, leg));
            }
        }
        assert_eq!(token(3, Leg::Client), Token(6));
        assert_eq!(token(3, Leg::Upstream), Token(7));
    }
}
