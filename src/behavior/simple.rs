//! The behaviors that only return a verdict: `dummy`, `hang`, `blackout`, `abort`.

use super::{Behavior, Call, Verdict};

/// Transparent: every hook forwards.
#[derive(Debug)]
pub struct Dummy;
impl Behavior for Dummy {
    fn transparent(&self) -> bool {
        true
    }
}

/// Reads and drops the client's data; answers nothing.
#[derive(Debug)]
pub struct Hang;
impl Behavior for Hang {
    fn before(&self, _: &mut Call<'_>) -> Verdict {
        Verdict::Hang
    }
    fn after(&self, _: &mut Call<'_>) -> Verdict {
        Verdict::Hang
    }
}

/// Closes the client connection at once.
#[derive(Debug)]
pub struct Blackout;
impl Behavior for Blackout {
    fn before(&self, _: &mut Call<'_>) -> Verdict {
        Verdict::Close
    }
    fn after(&self, _: &mut Call<'_>) -> Verdict {
        Verdict::Close
    }
}

/// Lets the request reach the backend, then closes both sides without a response.
#[derive(Debug)]
pub struct Abort;
impl Behavior for Abort {
    fn before(&self, _: &mut Call<'_>) -> Verdict {
        Verdict::Abort
    }
    fn after(&self, _: &mut Call<'_>) -> Verdict {
        Verdict::Abort
    }
}
