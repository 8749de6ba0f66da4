//! The connection machine itself under arbitrary operation sequences: the
//! real `Session`, driven through `session::pair` as the event loop drives
//! it (no copy of the loop here), on a virtual clock, with a client that
//! reads arbitrary amounts or stops reading. Checked after every operation:
//! the effects make sense (at most one end, and nothing after it; a room
//! membership exactly while open; every leave after an open), the session
//! always has a deadline unless it ended, its queue stays bounded; and at
//! the end, once the client reads everything, the bytes it got are HTTP
//! answers then whole frames, with a close frame (if any) last. A timing
//! wheel with arbitrary schedules and jumps is checked against a list.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use roomcast::auth::RateLimit;
use roomcast::relay::ConnId;
use roomcast::server::wheel::{Entry, TimerWheel};
use roomcast::session::pair::{upgrade_request, Pair};
use roomcast::session::{Effect, Policy, Tick};
use roomcast::wire::frame;
use roomcast::wire::message::Limits;

/// One thing that happens to a connection. The input is a plain byte
/// format so seeds can be written by hand (see README.md): a tag byte, then
/// the operation's fields, integers little-endian; missing bytes read as 0.
#[derive(Debug)]
enum Op<'a> {
    /// 0: bytes from the client (u16 length, bytes); length 0 is its EOF.
    Read(&'a [u8]),
    /// 1: a valid upgrade request (u8: odd for /ws/echo/, even for
    /// /ws/chat/lobby/).
    Upgrade { echo: bool },
    /// 2: a masked client frame, any opcode (u8 flags: 0x80 FIN, low
    /// nibble opcode; 4 mask bytes; u16 length; payload).
    ClientFrame {
        fin: bool,
        opcode: u8,
        mask: [u8; 4],
        payload: &'a [u8],
    },
    /// 3: a broadcast to the room lands in this connection's queue (u16
    /// payload length, u8 fill), as the loop's fan-out does.
    Broadcast { len: u16, fill: u8 },
    /// 4: the loop closes the connection as a slow consumer.
    SlowConsumer,
    /// 5: the client reads: the socket takes the sum of the amounts (u8
    /// count, u16 amounts), then stops taking again.
    Writable(Vec<u16>),
    /// 6: a timer on the wheel (u8 key, u8 generation, u16 delay in ticks,
    /// up to 8 ticks in the past).
    Schedule { key: u8, generation: u8, delay: u16 },
    /// 7: time passes (u16 ticks), for the session and the wheel.
    Tick(u16),
}

fn int<'a, T: Arbitrary<'a> + Default>(u: &mut Unstructured<'a>) -> T {
    u.arbitrary().unwrap_or_default()
}

fn next_op<'a>(u: &mut Unstructured<'a>) -> Option<Op<'a>> {
    if u.is_empty() {
        return None;
    }
    let bytes = |u: &mut Unstructured<'a>, n: u16| {
        let n = usize::from(n).min(u.len());
        u.bytes(n).unwrap_or_default()
    };
    Some(match int::<u8>(u) % 8 {
        0 => {
            let n = int(u);
            Op::Read(bytes(u, n))
        }
        1 => Op::Upgrade {
            echo: int::<u8>(u) % 2 == 1,
        },
        2 => {
            let flags: u8 = int(u);
            let mask = int(u);
            let n = int(u);
            Op::ClientFrame {
                fin: flags & 0x80 != 0,
                opcode: flags & 0x0F,
                mask,
                payload: bytes(u, n),
            }
        }
        3 => Op::Broadcast {
            len: int(u),
            fill: int(u),
        },
        4 => Op::SlowConsumer,
        5 => {
            let count: u8 = int(u);
            Op::Writable((0..count).map(|_| int(u)).collect())
        }
        6 => Op::Schedule {
            key: int(u),
            generation: int(u),
            delay: int(u),
        },
        _ => Op::Tick(int(u)),
    })
}

/// Broadcast bytes queued at most, so a run stays small.
const MAX_PUSHED_BYTES: usize = 1 << 22;

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let max_header: u16 = int(&mut u);
    let bits: u8 = int(&mut u);
    // Odd: a --max-pings-per-second of 1 to 128, so ping floods close.
    let pings: u8 = int(&mut u);
    let limits = Limits {
        max_frame_size: 1 << (bits & 0x0F),
        max_message_size: 1 << ((bits >> 4) + 1),
    };
    let policy = Policy {
        limits,
        max_header_size: usize::from(max_header % 4096) + 16,
        max_send_queue: (limits.max_message_size as usize + 64).max(4096),
        pings: (pings & 1 == 1)
            .then(|| RateLimit::new(f64::from(pings >> 1) + 1.0, 20))
            .flatten(),
        ..Policy::default()
    };
    let mut pair = Pair::new(policy.clone());
    pair.window = Some(0);
    let mut timers = Timers::default();
    let mut pushed = 0;
    while let Some(op) = next_op(&mut u) {
        match op {
            Op::Read([]) => pair.client_eof(),
            Op::Read(bytes) => pair.client_sends(bytes),
            Op::Upgrade { echo } => {
                let path = if echo { "/ws/echo/" } else { "/ws/chat/lobby/" };
                pair.client_sends(&upgrade_request(path));
            }
            Op::ClientFrame {
                fin,
                opcode,
                mask,
                payload,
            } => pair.client_sends(&frame::encode_client_frame(fin, opcode, payload, mask)),
            Op::Broadcast { len, fill } => {
                pushed += usize::from(len) + 80;
                if pair.session.membership().is_some() && pushed <= MAX_PUSHED_BYTES {
                    pair.broadcast(&vec![fill; usize::from(len)]);
                }
            }
            Op::SlowConsumer => pair.input(|s, cx| s.close_slow_consumer(cx)),
            Op::Writable(amounts) => {
                pair.window = Some(amounts.iter().map(|&a| usize::from(a)).sum());
                pair.drive();
                pair.window = Some(0);
            }
            Op::Schedule {
                key,
                generation,
                delay,
            } => timers.schedule(key, generation, delay),
            Op::Tick(by) => {
                pair.advance(u32::from(by));
                timers.tick(by);
            }
        }
        check(&pair, &policy, pushed);
    }
    // The client reads everything: what it got must be well formed.
    pair.window = None;
    pair.drive();
    check(&pair, &policy, pushed);
    check_stream(&mut pair);
});

/// What must hold after every operation.
fn check(pair: &Pair, policy: &Policy, pushed: usize) {
    let effects = &pair.log.effects;
    let ends = effects
        .iter()
        .filter(|e| matches!(e, Effect::Ended { .. }))
        .count();
    assert!(ends <= 1, "ended twice: {effects:?}");
    if ends == 1 {
        assert!(
            matches!(effects.last(), Some(Effect::Ended { .. })),
            "nothing after the end: {effects:?}"
        );
        assert!(pair.session.is_ended());
    }
    assert_eq!(pair.session.is_ended(), pair.ended.is_some());
    let opens = effects
        .iter()
        .filter(|e| matches!(e, Effect::Upgrade(_)))
        .count();
    let leaves = effects
        .iter()
        .filter(|e| matches!(e, Effect::Left(_)))
        .count();
    assert!(opens <= 1 && leaves <= opens, "{effects:?}");
    assert_eq!(leaves + usize::from(pair.session.is_open()), opens);
    // A member exactly while open in a chat room.
    assert_eq!(
        pair.session.membership().is_some(),
        !pair.rooms.is_empty(),
        "room membership and the open stage disagree"
    );
    assert!(pair.session.is_ended() || pair.session.deadline(policy).is_some());
    // Broadcasts are not slowed here (the pair has no senders to stop), so
    // a draining client may hold all of them until it is judged.
    let bound = policy.max_send_queue
        + pushed.min(MAX_PUSHED_BYTES) * 2
        + 2 * (policy.limits.max_message_size as usize + 14)
        + 65_536;
    assert!(
        pair.session.queued() <= bound,
        "queue {} over {bound}",
        pair.session.queued()
    );
}

/// The client's whole byte stream: HTTP answers, then (after a 101) whole
/// frames only, a close frame last.
fn check_stream(pair: &mut Pair) {
    let mut upgraded = false;
    while let Some((status, _, _)) = pair.next_http() {
        if status == 101 {
            upgraded = true;
            break;
        }
    }
    if !upgraded {
        return;
    }
    let frames = pair.frames();
    assert!(
        pair.inbox.is_empty(),
        "a partial frame was left: {:?}",
        pair.inbox
    );
    if let Some(i) = frames.iter().position(|f| f.opcode == 0x8) {
        assert_eq!(i + 1, frames.len(), "frames after the close");
    }
    for f in &frames {
        assert!(f.fin && f.rsv == 0);
    }
}

#[derive(Default)]
struct Timers {
    wheel: TimerWheel,
    now: u32,
    live: Vec<Entry>,
    out: Vec<Entry>,
}

impl Timers {
    fn schedule(&mut self, key: u8, generation: u8, delay: u16) {
        // Up to 8 ticks in the past: the wheel fires those on the next tick.
        let due = (self.now + u32::from(delay)).saturating_sub(8);
        let conn = ConnId {
            key: u32::from(key),
            generation: u32::from(generation),
        };
        self.wheel.schedule(conn, Tick(due));
        self.live.push(Entry {
            conn,
            due: Tick(due.max(self.now + 1)),
        });
        assert_eq!(self.wheel.len(), self.live.len());
    }

    fn tick(&mut self, by: u16) {
        if self.now > u32::MAX / 2 {
            return;
        }
        let now = self.now + u32::from(by);
        self.wheel.expire(Tick(now), &mut self.out);
        if now > self.now {
            self.now = now;
        }
        let key = |e: &Entry| (e.due, e.conn.key, e.conn.generation);
        let mut want: Vec<Entry> = self
            .live
            .iter()
            .filter(|e| e.due <= Tick(now))
            .copied()
            .collect();
        self.live.retain(|e| e.due > Tick(now));
        want.sort_by_key(key);
        self.out.sort_by_key(key);
        assert_eq!(self.out, want);
        self.out.clear();
        assert_eq!(self.wheel.len(), self.live.len());
        assert_eq!(self.wheel.is_empty(), self.live.is_empty());
    }
}
