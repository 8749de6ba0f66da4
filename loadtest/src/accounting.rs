//! What was sent and what came back within one measured window.
//!
//! A message counts when its embedded send timestamp falls in `[start, end)` of the
//! current window and its epoch is the current step's. For each such message the sender
//! adds the number of open members of its room (itself included) to `expected`; each
//! receiver that gets it adds one to `delivered` and records the send-to-receive latency.
//! `lost = expected - delivered`. Receivers also remember the last sequence number seen
//! from each sender of their room, which exposes duplicates and reordering, and check
//! that the sender is in their room at all.

use crate::layout::Layout;
use crate::payload::{classify, Incoming, Stamp};
use hdrhistogram::Histogram;
use serde::Serialize;

/// Highest latency the histograms track: an hour, far past any drain period.
const MAX_TRACKED_US: u64 = 3_600_000_000;

/// The measured window of one step.
#[derive(Clone, Copy, Debug, Default)]
pub struct Window {
    pub epoch: u32,
    pub start_us: u64,
    pub end_us: u64,
}

impl Window {
    pub fn contains(&self, ts_us: u64) -> bool {
        ts_us >= self.start_us && ts_us < self.end_us
    }
}

/// A receiving client's own accounting state, kept small: its room, the sender id its own
/// messages carry and, per sender of that room, the last sequence number it saw.
#[derive(Debug, Default)]
pub struct RxState {
    pub room: u32,
    /// The sender id in this connection's own messages (the client id, except for soak
    /// churners, which take a fresh id per connection). Fits in the padding: no growth.
    pub id: u32,
    pub last_seq: Box<[u32]>,
}

impl RxState {
    pub fn new(room: usize, senders_in_room: usize) -> RxState {
        RxState {
            room: room as u32,
            id: 0,
            last_seq: vec![0; senders_in_room].into_boxed_slice(),
        }
    }
}

/// Where a client's received messages go: the plain [`Accounting`] of the load modes, or
/// the soak mode's accounting (stable members and churners).
pub trait Sink {
    /// One whole text message received by the client whose state is `rx`.
    fn on_text(&mut self, rx: &mut RxState, text: &[u8], now_us: u64);
    /// One whole binary message (a chat server never sends them).
    fn on_binary(&mut self, rx: &mut RxState);
    /// Chat deliveries seen so far, all windows, for the progress lines' rate.
    fn lifetime_received(&self) -> u64;
    /// `n` bytes were read from a socket (frames, headers and all).
    fn on_read(&mut self, _n: usize) {}
    /// One whole data message: `wire` payload bytes as received, `plain` once inflated
    /// (equal when it came uncompressed).
    fn on_wire(&mut self, _wire: usize, _plain: usize) {}
}

/// Bytes received, ever (windows are told apart by taking two readings): what
/// `--deflate` reports as wire bytes per delivery and compression ratio.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WireCounts {
    /// Read from sockets once open: frame headers, control frames and all.
    pub read_bytes: u64,
    /// Data messages, and their payload bytes as received and as inflated.
    pub messages: u64,
    pub payload_wire: u64,
    pub payload_plain: u64,
}

#[derive(Clone, Copy)]
struct SenderInfo {
    room: u32,
    /// `u32::MAX` for clients that do not send.
    slot: u32,
}

/// One node's share of a window: the deliveries its members were due and got.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct NodeCounts {
    /// Sum over window messages of their room's open members on this node at send time.
    pub expected: u64,
    /// Window deliveries to this node's members.
    pub delivered: u64,
}

impl NodeCounts {
    pub fn lost(&self) -> u64 {
        self.expected.saturating_sub(self.delivered)
    }
}

/// Per-window counters; `Accounting::begin` zeroes them all at once.
#[derive(Clone, Debug, Default)]
pub struct Counts {
    /// Messages sent in the window.
    pub sent: u64,
    /// Sum over those messages of their room's open members at send time.
    pub expected: u64,
    /// Deliveries of window messages (first sight of each sender/sequence per receiver).
    pub delivered: u64,
    /// Messages sent during warm-up (not counted).
    pub warmup_sent: u64,
    /// Deliveries of this epoch's messages, window or not.
    pub received: u64,
    /// Deliveries whose sequence number was not above the last one seen from that sender
    /// (duplicates or reordering); never counted as delivered.
    pub out_of_order: u64,
    /// Deliveries from a sender of another room.
    pub misrouted: u64,
    /// Deliveries naming a sender id that is not one of ours.
    pub foreign: u64,
    /// Deliveries from an earlier step, arriving late.
    pub stale: u64,
    /// `{"error": ...}` frames.
    pub errors: u64,
    pub first_error: Option<String>,
    /// Text frames that are neither.
    pub unrecognized: u64,
    /// Binary frames (the protocol never sends them to a chat client).
    pub binary: u64,
    /// Sends skipped because that client's unsent queue was full (the server not reading).
    pub skipped_backpressure: u64,
    /// `expected` and `delivered` split by the receiving member's node (one entry per
    /// node; a single-node run has one).
    pub per_node: Vec<NodeCounts>,
    /// Traffic to and from guests (the attack scenarios' attackers), kept apart: it
    /// is expected by no one and fails nothing.
    pub guest: GuestCounts,
}

/// What guests (sender ids in [`Accounting::set_guests`]'s range) received, and how often
/// members received a guest's message.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct GuestCounts {
    /// Chat deliveries to guests (their own echoes included).
    pub received: u64,
    /// Of those, a guest's own message come back: the relay accepted it.
    pub echoed: u64,
    /// `{"error": ...}` frames to guests (a rate limiter's answers).
    pub errors: u64,
    pub first_error: Option<String>,
    /// Deliveries of guests' messages to members.
    pub to_members: u64,
}

impl Counts {
    /// All zero, with `nodes` per-node entries.
    pub fn zeroed(nodes: usize) -> Counts {
        Counts {
            per_node: vec![NodeCounts::default(); nodes.max(1)],
            ..Counts::default()
        }
    }

    pub fn lost(&self) -> u64 {
        self.expected.saturating_sub(self.delivered)
    }

    /// More deliveries than members could take.
    pub fn unexpected(&self) -> u64 {
        self.delivered.saturating_sub(self.expected)
    }
}

pub struct Accounting {
    window: Window,
    senders: Vec<SenderInfo>,
    /// Sender ids of guests: their traffic goes to [`Counts::guest`] (empty: none).
    guests: std::ops::Range<u32>,
    /// Nodes the clients are spread over ([`Layout::node_of`]), and the room count that
    /// maps a receiver's id to its node.
    nodes: usize,
    rooms: usize,
    pub counts: Counts,
    /// Across all steps, for progress lines.
    pub lifetime_sent: u64,
    pub lifetime_received: u64,
    pub latency: Histogram<u64>,
    /// How late each window send left compared with its schedule: the harness's own lag.
    pub send_lag: Histogram<u64>,
    /// Bytes received, across all steps.
    pub wire: WireCounts,
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_TRACKED_US, 3).expect("constant histogram bounds are valid")
}

impl Accounting {
    /// One node.
    pub fn new(layout: &Layout) -> Accounting {
        Accounting::with_nodes(layout, 1)
    }

    /// Clients spread over `nodes` servers by [`Layout::node_of`]; receivers are told
    /// apart by node in [`Counts::per_node`].
    pub fn with_nodes(layout: &Layout, nodes: usize) -> Accounting {
        let nodes = nodes.max(1);
        let senders = (0..layout.clients)
            .map(|c| SenderInfo {
                room: layout.room_of(c) as u32,
                slot: layout.sender_slot(c).map_or(u32::MAX, |s| s as u32),
            })
            .collect();
        Accounting {
            window: Window::default(),
            senders,
            guests: 0..0,
            nodes,
            rooms: layout.rooms,
            counts: Counts::zeroed(nodes),
            lifetime_sent: 0,
            lifetime_received: 0,
            latency: histogram(),
            send_lag: histogram(),
            wire: WireCounts::default(),
        }
    }

    pub fn window(&self) -> Window {
        self.window
    }

    /// Sender ids in `ids` are guests: what they receive, and their messages wherever
    /// they arrive, are counted in [`Counts::guest`] instead of as members' traffic.
    pub fn set_guests(&mut self, ids: std::ops::Range<u32>) {
        self.guests = ids;
    }

    /// Starts a new step: all per-window counters back to zero.
    pub fn begin(&mut self, window: Window) {
        self.window = window;
        self.counts = Counts::zeroed(self.nodes);
        self.latency.reset();
        self.send_lag.reset();
    }

    /// Records a send at `ts_us` into a room that has `members` open connections (a
    /// single-node run; with several nodes use [`Accounting::on_sent_per_node`]).
    pub fn on_sent(&mut self, ts_us: u64, members: u64, lag_us: u64) {
        if self.count_sent(ts_us, members, lag_us) && self.nodes == 1 {
            if let Some(n) = self.counts.per_node.first_mut() {
                n.expected += members;
            }
        }
    }

    /// Records a send at `ts_us` into a room that has `members[k]` open connections on
    /// node `k`.
    pub fn on_sent_per_node(&mut self, ts_us: u64, members: &[u64], lag_us: u64) {
        if self.count_sent(ts_us, members.iter().sum(), lag_us) {
            for (n, &m) in self.counts.per_node.iter_mut().zip(members) {
                n.expected += m;
            }
        }
    }

    /// The totals of a send; `true` when it is a window message.
    fn count_sent(&mut self, ts_us: u64, members: u64, lag_us: u64) -> bool {
        self.lifetime_sent += 1;
        if self.window.contains(ts_us) {
            self.counts.sent += 1;
            self.counts.expected += members;
            self.send_lag.saturating_record(lag_us.max(1));
            true
        } else {
            if ts_us < self.window.start_us {
                self.counts.warmup_sent += 1;
            }
            false
        }
    }

    /// Accounts one text frame received by the client whose state is `rx`.
    pub fn on_text(&mut self, rx: &mut RxState, text: &[u8], now_us: u64) {
        if self.guests.contains(&rx.id) {
            return self.on_guest_text(rx, text);
        }
        match classify(text) {
            Incoming::Chat(s) => self.on_stamp(rx, s, now_us),
            Incoming::Error(e) => self.on_error(e),
            Incoming::Other => self.counts.unrecognized += 1,
        }
    }

    /// A text frame to a guest: counted apart, never judged.
    fn on_guest_text(&mut self, rx: &RxState, text: &[u8]) {
        let g = &mut self.counts.guest;
        match classify(text) {
            Incoming::Chat(s) => {
                self.lifetime_received += 1;
                g.received += 1;
                if s.sender == rx.id {
                    g.echoed += 1;
                }
            }
            Incoming::Error(e) => {
                g.errors += 1;
                if g.first_error.is_none() {
                    g.first_error = Some(String::from_utf8_lossy(&e[..e.len().min(200)]).into());
                }
            }
            Incoming::Other => {}
        }
    }

    /// An `{"error": ...}` frame: counted, the first one kept.
    pub fn on_error(&mut self, e: &[u8]) {
        self.counts.errors += 1;
        if self.counts.first_error.is_none() {
            let shown = &e[..e.len().min(200)];
            self.counts.first_error = Some(String::from_utf8_lossy(shown).into_owned());
        }
    }

    /// Accounts one delivery of our message `stamp` to the client whose state is `rx`.
    pub fn on_stamp(&mut self, rx: &mut RxState, stamp: Stamp, now_us: u64) {
        self.lifetime_received += 1;
        if self.guests.contains(&stamp.sender) {
            self.counts.guest.to_members += 1;
            return;
        }
        if stamp.epoch != self.window.epoch {
            self.counts.stale += 1;
            return;
        }
        self.counts.received += 1;
        let Some(info) = self
            .senders
            .get(stamp.sender as usize)
            .copied()
            .filter(|i| i.slot != u32::MAX)
        else {
            self.counts.foreign += 1;
            return;
        };
        if info.room != rx.room {
            self.counts.misrouted += 1;
            return;
        }
        let Some(last) = rx.last_seq.get_mut(info.slot as usize) else {
            self.counts.foreign += 1;
            return;
        };
        if stamp.seq <= *last {
            self.counts.out_of_order += 1;
            return;
        }
        *last = stamp.seq;
        if self.window.contains(stamp.ts_us) {
            self.counts.delivered += 1;
            let node = (rx.id as usize / self.rooms) % self.nodes;
            if let Some(n) = self.counts.per_node.get_mut(node) {
                n.delivered += 1;
            }
            self.latency
                .saturating_record(now_us.saturating_sub(stamp.ts_us).max(1));
        }
    }

    pub fn on_binary(&mut self) {
        self.counts.binary += 1;
    }
}

impl Sink for Accounting {
    fn on_text(&mut self, rx: &mut RxState, text: &[u8], now_us: u64) {
        Accounting::on_text(self, rx, text, now_us);
    }

    fn on_binary(&mut self, _rx: &mut RxState) {
        Accounting::on_binary(self);
    }

    fn lifetime_received(&self) -> u64 {
        self.lifetime_received
    }

    fn on_read(&mut self, n: usize) {
        self.wire.read_bytes += n as u64;
    }

    fn on_wire(&mut self, wire: usize, plain: usize) {
        self.wire.messages += 1;
        self.wire.payload_wire += wire as u64;
        self.wire.payload_plain += plain as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::encode;

    fn frame(epoch: u32, ts_us: u64, sender: u32, seq: u32) -> Vec<u8> {
        let mut v = Vec::new();
        encode(
            &mut v,
            &Stamp {
                epoch,
                ts_us,
                sender,
                seq,
            },
            64,
        );
        v
    }

    /// Two rooms of two, everyone sends; window [1000, 2000) of epoch 1.
    fn setup() -> (Accounting, RxState, RxState) {
        let layout = Layout::new(4, 2, None).unwrap();
        let mut a = Accounting::new(&layout);
        a.begin(Window {
            epoch: 1,
            start_us: 1000,
            end_us: 2000,
        });
        (a, RxState::new(0, 2), RxState::new(1, 2))
    }

    #[test]
    fn only_window_messages_count() {
        let (mut a, mut rx0, _) = setup();
        a.on_sent(999, 2, 0);
        a.on_sent(1000, 2, 0);
        a.on_sent(1999, 2, 0);
        a.on_sent(2000, 2, 0);
        assert_eq!(
            (a.counts.warmup_sent, a.counts.sent, a.counts.expected),
            (1, 2, 4)
        );
        // Client 0 and 2 are room 0's senders (slots 0 and 1).
        a.on_text(&mut rx0, &frame(1, 999, 0, 1), 1500);
        a.on_text(&mut rx0, &frame(1, 1000, 0, 2), 1500);
        a.on_text(&mut rx0, &frame(1, 1999, 2, 1), 2100);
        assert_eq!(a.counts.delivered, 2);
        assert_eq!(a.counts.received, 3);
        assert_eq!(a.latency.len(), 2);
        assert_eq!((a.latency.min(), a.latency.max()), (101, 500));
        assert_eq!(a.counts.lost(), 2);
    }

    #[test]
    fn duplicates_reordering_misrouting_and_stale_are_caught() {
        let (mut a, mut rx0, mut rx1) = setup();
        a.on_text(&mut rx0, &frame(1, 1500, 0, 5), 1600);
        a.on_text(&mut rx0, &frame(1, 1500, 0, 5), 1600); // duplicate
        a.on_text(&mut rx0, &frame(1, 1400, 0, 4), 1600); // reordered
        a.on_text(&mut rx1, &frame(1, 1500, 0, 6), 1600); // room 0's sender seen in room 1
        a.on_text(&mut rx0, &frame(0, 1500, 2, 1), 1600); // previous step
        a.on_text(&mut rx0, &frame(1, 1500, 99, 1), 1600); // not our client
        a.on_text(&mut rx0, br#"{"error": "nope"}"#, 1600);
        a.on_text(&mut rx0, br#"{"hello": 1}"#, 1600);
        assert_eq!(a.counts.delivered, 1);
        assert_eq!(a.counts.out_of_order, 2);
        assert_eq!(a.counts.misrouted, 1);
        assert_eq!(a.counts.stale, 1);
        assert_eq!(a.counts.foreign, 1);
        assert_eq!(a.counts.errors, 1);
        assert_eq!(
            a.counts.first_error.as_deref(),
            Some(r#"{"error": "nope"}"#)
        );
        assert_eq!(a.counts.unrecognized, 1);
    }

    #[test]
    fn deliveries_are_split_by_the_receivers_node() {
        // Two rooms of four over two nodes: clients 0, 1, 4, 5 on node 0; 2, 3, 6, 7 on 1.
        let layout = Layout::new(8, 2, None).unwrap();
        let mut a = Accounting::with_nodes(&layout, 2);
        a.begin(Window {
            epoch: 1,
            start_us: 1000,
            end_us: 2000,
        });
        let rx = |id: u32| {
            let mut r = RxState::new(layout.room_of(id as usize), 4);
            r.id = id;
            r
        };
        // Client 2 (room 0, node 1) sends: room 0 has members 0, 4 on node 0, 2, 6 on 1.
        a.on_sent_per_node(1500, &[2, 2], 0);
        a.on_sent_per_node(500, &[2, 2], 0); // warm-up: counted nowhere
        for id in [0, 4, 2] {
            a.on_text(&mut rx(id), &frame(1, 1500, 2, 1), 1600);
        }
        assert_eq!((a.counts.expected, a.counts.delivered), (4, 3));
        assert_eq!(
            a.counts.per_node,
            vec![
                NodeCounts {
                    expected: 2,
                    delivered: 2
                },
                NodeCounts {
                    expected: 2,
                    delivered: 1
                }
            ]
        );
        assert_eq!(a.counts.per_node[1].lost(), 1);
        // The plain call feeds the single node of a one-node run.
        let mut one = Accounting::new(&layout);
        one.begin(Window {
            epoch: 1,
            start_us: 1000,
            end_us: 2000,
        });
        one.on_sent(1500, 4, 0);
        assert_eq!(one.counts.per_node[0].expected, 4);
    }

    #[test]
    fn begin_resets_the_window_but_keeps_lifetime_totals() {
        let (mut a, mut rx0, _) = setup();
        a.on_sent(1500, 2, 3);
        a.on_text(&mut rx0, &frame(1, 1500, 0, 1), 1600);
        a.begin(Window {
            epoch: 2,
            start_us: 5000,
            end_us: 6000,
        });
        assert_eq!(
            (
                a.counts.sent,
                a.counts.expected,
                a.counts.delivered,
                a.latency.len(),
                a.send_lag.len()
            ),
            (0, 0, 0, 0, 0)
        );
        assert_eq!((a.lifetime_sent, a.lifetime_received), (1, 1));
        a.on_text(&mut rx0, &frame(2, 5500, 0, 2), 5600);
        assert_eq!(a.counts.delivered, 1);
    }
}
