//! The room registry: room name to member list, with O(1) join and leave.
//!
//! Invariants: a room exists exactly while it has members (the last leave
//! frees it, and its name); each member knows its index in its room's list
//! (`Membership`), which is what makes leaving O(1) with `swap_remove`.
//! Member order carries no meaning: delivery order comes from each
//! connection's FIFO send queue, not from the order of fan-out.
//!
//! A room also keeps its flow-control state: how many members are behind
//! and holding its senders back, and which members' reads wait for that to
//! end (ARCHITECTURE.md, "Flow control"). A room that is freed takes its
//! waiting readers with it: they were its members, and have left.

use crate::relay::ConnId;
use slab::Slab;
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;

/// A room's slot in the registry plus a generation, so a room id kept in a
/// decode batch never names a newer room that reused the slot. The
/// generation is never zero, which lets `Option<Membership>` (and a
/// session's route) cost no extra bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RoomId {
    pub slot: u32,
    pub generation: NonZeroU32,
}

/// Where a connection sits: its room and its index in the member list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Membership {
    pub room: RoomId,
    pub index: u32,
}

/// One room: its name and its members, `M` being how the registry's user
/// names a connection (the relay's [`ConnId`]).
#[derive(Debug)]
pub struct Room<M = ConnId> {
    /// Shared with the Redis backplane's commands without copying.
    pub name: Arc<str>,
    generation: NonZeroU32,
    pub members: Vec<M>,
    /// Members behind and still draining; while any, none of the room's
    /// members is read.
    throttled_by: u32,
    /// Members whose reading waits for the room to drain, with whether
    /// their peer had already shut its side.
    waiting: Vec<(M, bool)>,
}

#[derive(Debug)]
pub struct Rooms<M = ConnId> {
    by_name: HashMap<Arc<str>, u32>,
    rooms: Slab<Room<M>>,
    next_generation: NonZeroU32,
}

impl<M> Default for Rooms<M> {
    fn default() -> Self {
        Rooms {
            by_name: HashMap::new(),
            rooms: Slab::new(),
            next_generation: NonZeroU32::MIN,
        }
    }
}

impl<M: Copy> Rooms<M> {
    /// Adds connection `conn` to room `name`, creating the room if needed.
    pub fn join(&mut self, name: &str, conn: M) -> Membership {
        let slot = match self.by_name.get(name) {
            Some(&slot) => slot,
            None => {
                self.next_generation = self
                    .next_generation
                    .checked_add(1)
                    .unwrap_or(NonZeroU32::MIN);
                let name: Arc<str> = name.into();
                let slot = self.rooms.insert(Room {
                    name: name.clone(),
                    generation: self.next_generation,
                    members: Vec::new(),
                    throttled_by: 0,
                    waiting: Vec::new(),
                }) as u32;
                self.by_name.insert(name, slot);
                slot
            }
        };
        let room = &mut self.rooms[slot as usize];
        room.members.push(conn);
        Membership {
            room: RoomId {
                slot,
                generation: room.generation,
            },
            index: (room.members.len() - 1) as u32,
        }
    }

    /// Removes the member at `m`. Returns the connection that moved into
    /// the vacated index (its `Membership::index` must become `m.index`).
    pub fn leave(&mut self, m: Membership) -> Option<M> {
        let room = self.get_mut(m.room)?;
        debug_assert!((m.index as usize) < room.members.len());
        room.members.swap_remove(m.index as usize);
        let moved = room.members.get(m.index as usize).copied();
        if room.members.is_empty() {
            let room = self.rooms.remove(m.room.slot as usize);
            self.by_name.remove(&room.name);
        } else if room.members.capacity() > 64 && room.members.len() < room.members.capacity() / 4 {
            // Give back what a crowd left behind.
            room.members.shrink_to(room.members.len() * 2);
        }
        moved
    }

    /// The live room called `name`.
    pub fn find(&self, name: &str) -> Option<RoomId> {
        let slot = *self.by_name.get(name)?;
        let room = &self.rooms[slot as usize];
        Some(RoomId {
            slot,
            generation: room.generation,
        })
    }

    pub fn get(&self, id: RoomId) -> Option<&Room<M>> {
        self.rooms
            .get(id.slot as usize)
            .filter(|r| r.generation == id.generation)
    }

    fn get_mut(&mut self, id: RoomId) -> Option<&mut Room<M>> {
        self.rooms
            .get_mut(id.slot as usize)
            .filter(|r| r.generation == id.generation)
    }

    /// A member fell behind while draining (`on`) or stopped holding the
    /// room back; returns the readers to resume when the room is free again.
    pub fn throttle(&mut self, id: RoomId, on: bool) -> Vec<(M, bool)> {
        let Some(room) = self.get_mut(id) else {
            return Vec::new();
        };
        if on {
            room.throttled_by += 1;
            return Vec::new();
        }
        debug_assert!(room.throttled_by > 0);
        room.throttled_by = room.throttled_by.saturating_sub(1);
        match room.throttled_by {
            0 => std::mem::take(&mut room.waiting),
            _ => Vec::new(),
        }
    }

    /// Whether the room's members must not be read now.
    pub fn is_throttled(&self, id: RoomId) -> bool {
        self.get(id).is_some_and(|r| r.throttled_by > 0)
    }

    /// Notes that `member` has something to read once the room is free.
    pub fn wait(&mut self, id: RoomId, member: M, hup: bool) {
        if let Some(room) = self.get_mut(id) {
            room.waiting.push((member, hup));
        }
    }

    pub fn len(&self) -> usize {
        self.rooms.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rooms.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_leave_and_free() {
        let mut rooms = Rooms::<u32>::default();
        let a = rooms.join("lobby", 1);
        let b = rooms.join("lobby", 2);
        let c = rooms.join("lobby", 3);
        let other = rooms.join("other", 4);
        assert_eq!(rooms.len(), 2);
        assert_eq!(a.room, b.room);
        assert_ne!(a.room, other.room);
        // Leaving from the front moves the last member into the hole.
        assert_eq!(rooms.leave(a), Some(3));
        let c = Membership {
            index: a.index,
            ..c
        };
        assert_eq!(rooms.get(b.room).unwrap().members, vec![3, 2]);
        assert_eq!(rooms.leave(b), None);
        let c = Membership { index: 0, ..c };
        assert_eq!(rooms.leave(c), None);
        assert!(rooms.get(a.room).is_none());
        assert_eq!(rooms.len(), 1);
        // A new room in the reused slot has a new generation.
        let again = rooms.join("lobby", 5);
        assert_ne!(again.room, a.room);
        assert!(rooms.get(a.room).is_none());
    }

    #[test]
    fn a_throttled_room_hands_back_its_waiting_readers_when_free() {
        let mut rooms = Rooms::<u32>::default();
        let a = rooms.join("busy", 1);
        rooms.join("busy", 2);
        assert!(!rooms.is_throttled(a.room));
        assert!(rooms.throttle(a.room, true).is_empty());
        assert!(rooms.throttle(a.room, true).is_empty());
        rooms.wait(a.room, 2, false);
        rooms.wait(a.room, 1, true);
        assert!(rooms.is_throttled(a.room));
        assert!(
            rooms.throttle(a.room, false).is_empty(),
            "one still holds it"
        );
        assert_eq!(rooms.throttle(a.room, false), vec![(2, false), (1, true)]);
        assert!(!rooms.is_throttled(a.room));
    }
}
