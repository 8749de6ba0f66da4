//! The soak mode's accounting: stable members and churners.
//!
//! Stable clients (ids `0..N`, laid out as in the load modes: client `i` in room
//! `i % rooms`) stay connected for the whole run; they are the measured receivers. Two kinds
//! of message are checked against them:
//!
//! * **stable messages** (sender id `< N`) go through the plain [`Accounting`]: each one
//!   sent in the window adds the number of stable members open in its room at that moment
//!   to `expected` (the sender included); each stable receiver that gets it adds one to
//!   `delivered`. Churners that receive them are not counted, only checked (room, order).
//! * **churner messages** carry a sender id that is fresh for every churn connection
//!   (`N`, `N+1`, ... in connect order), so each connection's room is known. Whether the
//!   relay *accepted* such a message is not known when it is sent: its sender may hang up
//!   right after. The rule: a churner message counts as **accepted** when its sender got
//!   its own copy back (the relay echoes every message to its sender) **or** at least one
//!   stable member received it (then the relay fanned it out, and every stable member of
//!   the room was in the room at that moment). An accepted message is expected by every
//!   stable member that was open in its room when it was sent; one that is neither echoed
//!   nor seen by anyone counts as `unaccepted` (the sender left before the relay read it)
//!   and is expected by no one. A churn connection's books are closed `grace` after it
//!   ended (or at the end of the run): then `expected`, `delivered` and `lost` are added
//!   up. A delivery that arrives after that is `late` (a failure).
//!
//! Every receiver also checks the room of every message and the per-sender order
//! (stable receivers for all senders, churners for stable senders), and a message whose
//! sequence number was never sent completely (the half frame a churner leaves behind, or
//! anything else) is a `phantom`.

use crate::accounting::{Accounting, RxState, Sink, Window};
use crate::layout::Layout;
use crate::payload::{classify, Incoming, Stamp};
use serde::Serialize;
use std::collections::HashMap;

/// Churner message figures (see the module documentation for the rule).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ChurnCounts {
    /// Whole messages churners sent (all inside the window).
    pub sent: u64,
    /// Of those, echoed back to their sender.
    pub echoed: u64,
    /// Echoed or seen by at least one stable member.
    pub accepted: u64,
    /// Accepted only because a stable member saw it (the sender left before its echo).
    pub accepted_unechoed: u64,
    /// Neither echoed nor seen: not counted either way.
    pub unaccepted: u64,
    /// Sum over accepted messages of the stable members open in the room at send time.
    pub expected: u64,
    /// Deliveries of accepted messages to stable members.
    pub delivered: u64,
    pub lost: u64,
    /// Deliveries to stable members after the connection's books were closed.
    pub late: u64,
    /// Deliveries of a churner sequence number that was never sent whole.
    pub phantom: u64,
    /// Messages (stable or churner) delivered to churners: checked, not counted.
    pub received_by_churners: u64,
    /// Deliveries to or from churners that crossed rooms.
    pub misrouted: u64,
    /// Duplicated or reordered deliveries involving churners (and churners' echoes).
    pub out_of_order: u64,
}

/// One churner message, until its connection's books close.
#[derive(Clone, Copy, Debug)]
struct Msg {
    /// Stable members open in the room when it was sent.
    expected: u32,
    /// Stable members that got it.
    delivered: u32,
    echoed: bool,
}

/// One churn connection's books.
#[derive(Debug)]
struct Conn {
    room: u32,
    closed_at_us: Option<u64>,
    /// By sequence number - 1.
    msgs: Vec<Msg>,
    last_echo: u32,
    /// Per stable member of the room (member index `id / rooms`), the last sequence seen.
    last_seen: Box<[u32]>,
}

pub struct SoakAcct {
    /// Stable senders to stable receivers, and the latency histogram of every counted
    /// delivery to a stable member (churner messages included).
    pub stable: Accounting,
    pub churn: ChurnCounts,
    layout: Layout,
    stable_n: u32,
    conns: HashMap<u32, Conn>,
    next_churn_id: u32,
    grace_us: u64,
}

impl SoakAcct {
    pub fn new(layout: &Layout, grace_us: u64) -> SoakAcct {
        SoakAcct {
            stable: Accounting::new(layout),
            churn: ChurnCounts::default(),
            layout: layout.clone(),
            stable_n: layout.clients as u32,
            conns: HashMap::new(),
            next_churn_id: layout.clients as u32,
            grace_us,
        }
    }

    pub fn begin(&mut self, window: Window) {
        self.stable.begin(window);
        self.churn = ChurnCounts::default();
    }

    pub fn is_stable(&self, sender_id: u32) -> bool {
        sender_id < self.stable_n
    }

    /// A fresh sender id for a churn connection about to start.
    pub fn new_churn_id(&mut self) -> u32 {
        let id = self.next_churn_id;
        self.next_churn_id += 1;
        id
    }

    /// Churn connection `id` opened in `room`.
    pub fn churn_opened(&mut self, id: u32, room: u32) {
        let members = self.layout.room_size(room as usize);
        self.conns.insert(
            id,
            Conn {
                room,
                closed_at_us: None,
                msgs: Vec::new(),
                last_echo: 0,
                last_seen: vec![0; members].into_boxed_slice(),
            },
        );
    }

    /// Churn connection `id` sent message `seq` (1, 2, ... in order) while `stable_members`
    /// stable members were open in its room.
    pub fn churn_sent(&mut self, id: u32, seq: u32, stable_members: u64) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        debug_assert_eq!(seq as usize, c.msgs.len() + 1);
        c.msgs.push(Msg {
            expected: stable_members as u32,
            delivered: 0,
            echoed: false,
        });
        self.churn.sent += 1;
    }

    /// Churn connection `id` ended (by either side) at `now_us`.
    pub fn churn_closed(&mut self, id: u32, now_us: u64) {
        if let Some(c) = self.conns.get_mut(&id) {
            c.closed_at_us.get_or_insert(now_us);
        }
    }

    /// Closes the books of connections that ended more than `grace` ago.
    pub fn settle_due(&mut self, now_us: u64) {
        let grace = self.grace_us;
        let due: Vec<u32> = self
            .conns
            .iter()
            .filter(|(_, c)| c.closed_at_us.is_some_and(|t| now_us >= t + grace))
            .map(|(&id, _)| id)
            .collect();
        for id in due {
            if let Some(c) = self.conns.remove(&id) {
                self.settle(c);
            }
        }
    }

    /// Closes every connection's books (end of run).
    pub fn settle_all(&mut self) {
        for (_, c) in std::mem::take(&mut self.conns) {
            self.settle(c);
        }
    }

    /// Churn connections whose books are still open.
    pub fn open_books(&self) -> usize {
        self.conns.len()
    }

    fn settle(&mut self, c: Conn) {
        let k = &mut self.churn;
        for m in c.msgs {
            k.echoed += u64::from(m.echoed);
            if m.echoed || m.delivered > 0 {
                k.accepted += 1;
                k.accepted_unechoed += u64::from(!m.echoed);
                k.expected += u64::from(m.expected);
                k.delivered += u64::from(m.delivered.min(m.expected));
                k.lost += u64::from(m.expected.saturating_sub(m.delivered));
            } else {
                k.unaccepted += 1;
            }
        }
    }

    fn churn_delivery(&mut self, rx: &mut RxState, s: Stamp, now_us: u64) {
        let Some(c) = self.conns.get_mut(&s.sender) else {
            if s.sender < self.next_churn_id {
                if rx.id < self.stable_n {
                    self.churn.late += 1;
                }
            } else {
                self.stable.counts.foreign += 1;
            }
            return;
        };
        if c.room != rx.room {
            self.churn.misrouted += 1;
            return;
        }
        let Some(m) = (s.seq as usize)
            .checked_sub(1)
            .and_then(|i| c.msgs.get_mut(i))
        else {
            self.churn.phantom += 1;
            return;
        };
        if rx.id == s.sender {
            if s.seq <= c.last_echo {
                self.churn.out_of_order += 1;
                return;
            }
            c.last_echo = s.seq;
            m.echoed = true;
        } else if rx.id < self.stable_n {
            let member = (rx.id as usize) / self.layout.rooms;
            let Some(last) = c.last_seen.get_mut(member) else {
                self.stable.counts.foreign += 1;
                return;
            };
            if s.seq <= *last {
                self.churn.out_of_order += 1;
                return;
            }
            *last = s.seq;
            m.delivered += 1;
            let window = self.stable.window();
            if window.contains(s.ts_us) {
                self.stable
                    .latency
                    .saturating_record(now_us.saturating_sub(s.ts_us).max(1));
            }
        } else {
            self.churn.received_by_churners += 1;
        }
    }

    /// A stable member's message delivered to a churner: room and order checked only.
    fn stable_to_churner(&mut self, rx: &mut RxState, s: Stamp) {
        self.churn.received_by_churners += 1;
        let sender = s.sender as usize;
        if self.layout.room_of(sender) != rx.room as usize {
            self.churn.misrouted += 1;
            return;
        }
        let slot = self.layout.sender_slot(sender);
        let Some(last) = slot.and_then(|i| rx.last_seq.get_mut(i)) else {
            self.stable.counts.foreign += 1;
            return;
        };
        if s.seq <= *last {
            self.churn.out_of_order += 1;
            return;
        }
        *last = s.seq;
    }
}

impl Sink for SoakAcct {
    fn on_text(&mut self, rx: &mut RxState, text: &[u8], now_us: u64) {
        let s = match classify(text) {
            Incoming::Chat(s) => s,
            Incoming::Error(e) => return self.stable.on_error(e),
            Incoming::Other => {
                self.stable.counts.unrecognized += 1;
                return;
            }
        };
        let receiver_stable = rx.id < self.stable_n;
        if self.is_stable(s.sender) && receiver_stable {
            return self.stable.on_stamp(rx, s, now_us);
        }
        self.stable.lifetime_received += 1;
        if s.epoch != self.stable.window().epoch {
            self.stable.counts.stale += 1;
            return;
        }
        if self.is_stable(s.sender) {
            self.stable_to_churner(rx, s);
        } else {
            self.churn_delivery(rx, s, now_us);
        }
    }

    fn on_binary(&mut self, _rx: &mut RxState) {
        self.stable.on_binary();
    }

    fn lifetime_received(&self) -> u64 {
        self.stable.lifetime_received
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::encode;

    fn frame(ts_us: u64, sender: u32, seq: u32) -> Vec<u8> {
        let mut v = Vec::new();
        let stamp = Stamp {
            epoch: 1,
            ts_us,
            sender,
            seq,
        };
        encode(&mut v, &stamp, 64);
        v
    }

    /// Four stable clients in two rooms (0 and 2 in room 0, 1 and 3 in room 1), books
    /// closed 100 µs after a connection ends, window [1000, 5000).
    fn setup() -> (SoakAcct, Vec<RxState>) {
        let layout = Layout::new(4, 2, None).unwrap();
        let mut a = SoakAcct::new(&layout, 100);
        a.begin(Window {
            epoch: 1,
            start_us: 1000,
            end_us: 5000,
        });
        let rx = (0..4)
            .map(|i| {
                let mut r = RxState::new(i % 2, 2);
                r.id = i as u32;
                r
            })
            .collect();
        (a, rx)
    }

    fn churner(a: &mut SoakAcct, room: u32) -> (u32, RxState) {
        let id = a.new_churn_id();
        a.churn_opened(id, room);
        let mut rx = RxState::new(room as usize, 2);
        rx.id = id;
        (id, rx)
    }

    #[test]
    fn echoed_churner_message_is_expected_by_every_stable_member_of_its_room() {
        let (mut a, mut rx) = setup();
        let (id, mut me) = churner(&mut a, 0);
        assert_eq!(id, 4);
        a.churn_sent(id, 1, 2);
        a.on_text(&mut me, &frame(1500, id, 1), 1600); // echo
        a.on_text(&mut rx[0], &frame(1500, id, 1), 1700);
        a.on_text(&mut rx[2], &frame(1500, id, 1), 1800);
        a.churn_closed(id, 2000);
        a.settle_due(2050);
        assert_eq!(a.open_books(), 1, "still within the grace period");
        a.settle_due(2100);
        assert_eq!(a.open_books(), 0);
        let c = &a.churn;
        assert_eq!((c.sent, c.echoed, c.accepted, c.unaccepted), (1, 1, 1, 0));
        assert_eq!((c.expected, c.delivered, c.lost), (2, 2, 0));
        assert_eq!(
            a.stable.latency.len(),
            2,
            "deliveries to stable members timed"
        );
        assert_eq!(a.stable.counts.expected, 0, "stable books untouched");
    }

    #[test]
    fn unechoed_message_counts_once_a_stable_member_saw_it_and_is_lost_for_the_rest() {
        let (mut a, mut rx) = setup();
        let (id, _me) = churner(&mut a, 1);
        a.churn_sent(id, 1, 2); // seen by member 1 only, no echo: accepted, one lost
        a.churn_sent(id, 2, 2); // nobody: sender left before the relay read it
        a.on_text(&mut rx[1], &frame(1500, id, 1), 1700);
        a.churn_closed(id, 2000);
        a.settle_all();
        let c = &a.churn;
        assert_eq!(
            (c.sent, c.echoed, c.accepted, c.accepted_unechoed),
            (2, 0, 1, 1)
        );
        assert_eq!(c.unaccepted, 1);
        assert_eq!((c.expected, c.delivered, c.lost), (2, 1, 1));
    }

    #[test]
    fn echoed_but_undelivered_is_lost_for_every_stable_member() {
        let (mut a, _rx) = setup();
        let (id, mut me) = churner(&mut a, 0);
        a.churn_sent(id, 1, 2);
        a.on_text(&mut me, &frame(1500, id, 1), 1600);
        a.settle_all();
        assert_eq!((a.churn.accepted, a.churn.lost), (1, 2));
    }

    #[test]
    fn late_phantom_misrouted_duplicate_and_cross_room_deliveries_are_caught() {
        let (mut a, mut rx) = setup();
        let (id, _me) = churner(&mut a, 0);
        a.churn_sent(id, 1, 2);
        a.on_text(&mut rx[0], &frame(1500, id, 1), 1600);
        a.on_text(&mut rx[0], &frame(1500, id, 1), 1600); // duplicate
        a.on_text(&mut rx[1], &frame(1500, id, 1), 1600); // room 1 member: misrouted
        a.on_text(&mut rx[2], &frame(1500, id, 2), 1600); // seq 2 never sent whole
        a.churn_closed(id, 2000);
        a.settle_due(3000);
        a.on_text(&mut rx[2], &frame(1500, id, 1), 3100); // after the books closed
        a.on_text(&mut rx[2], &frame(1500, 99, 1), 3100); // an id never handed out
        let c = &a.churn;
        assert_eq!(
            (c.out_of_order, c.misrouted, c.phantom, c.late),
            (1, 1, 1, 1)
        );
        assert_eq!((c.expected, c.delivered, c.lost), (2, 1, 1));
        assert_eq!(a.stable.counts.foreign, 1);
    }

    #[test]
    fn churners_check_stable_messages_without_counting_them() {
        let (mut a, mut rx) = setup();
        let (_, mut ch) = churner(&mut a, 0);
        a.stable.on_sent(1500, 2, 0);
        a.on_text(&mut rx[0], &frame(1500, 0, 1), 1600);
        a.on_text(&mut rx[2], &frame(1500, 0, 1), 1600);
        a.on_text(&mut ch, &frame(1500, 0, 1), 1600);
        a.on_text(&mut ch, &frame(1500, 0, 1), 1600); // duplicate to the churner
        a.on_text(&mut ch, &frame(1500, 1, 1), 1600); // room 1's sender
        let s = &a.stable.counts;
        assert_eq!((s.sent, s.expected, s.delivered, s.lost()), (1, 2, 2, 0));
        let c = &a.churn;
        assert_eq!(
            (c.received_by_churners, c.out_of_order, c.misrouted),
            (3, 1, 1)
        );
    }

    #[test]
    fn errors_and_noise_reach_the_stable_counters() {
        let (mut a, mut rx) = setup();
        a.on_text(&mut rx[0], br#"{"error": "nope"}"#, 1600);
        a.on_text(&mut rx[0], br#"{"hello": 1}"#, 1600);
        a.on_binary(&mut rx[0]);
        let s = &a.stable.counts;
        assert_eq!((s.errors, s.unrecognized, s.binary), (1, 1, 1));
    }
}
