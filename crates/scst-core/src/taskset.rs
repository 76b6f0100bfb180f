//! Task set ordering (SAM-5 8.6): SIMPLE tasks run concurrently, an ORDERED task waits
//! for every earlier task and holds back every later one, HEAD OF QUEUE runs at once.
//!
//! SCST's default `tst=1` gives every I_T nexus its own task set per LUN, so a task set
//! is owned by the session's driver (one thread of control) and needs no locking.

use std::collections::VecDeque;

use crate::cmd::TaskAttr;

#[derive(Debug)]
pub struct TaskSet<T> {
    /// Tasks released for execution and not yet completed.
    running: u32,
    /// An ORDERED task is running: nothing else may start except HEAD OF QUEUE.
    ordered_running: bool,
    /// Tasks that arrived while ordering forbade them to start, in arrival order.
    held: VecDeque<(TaskAttr, T)>,
}

impl<T> Default for TaskSet<T> {
    fn default() -> Self {
        TaskSet {
            running: 0,
            ordered_running: false,
            held: VecDeque::new(),
        }
    }
}

impl<T> TaskSet<T> {
    /// Offer a new task. Returns it back when it may start now; otherwise it is held.
    pub fn admit(&mut self, attr: TaskAttr, task: T) -> Option<T> {
        let may_start = match attr {
            TaskAttr::HeadOfQueue => true,
            TaskAttr::Simple | TaskAttr::Aca => self.held.is_empty() && !self.ordered_running,
            TaskAttr::Ordered => self.held.is_empty() && self.running == 0,
        };
        if may_start {
            self.start(attr);
            Some(task)
        } else {
            self.held.push_back((attr, task));
            None
        }
    }

    fn start(&mut self, attr: TaskAttr) {
        self.running += 1;
        if attr == TaskAttr::Ordered {
            self.ordered_running = true;
        }
    }

    /// A released task finished. The held tasks that may start now join `ready`, in
    /// order.
    pub fn complete(&mut self, attr: TaskAttr, ready: &mut VecDeque<T>) {
        self.running = self.running.saturating_sub(1);
        if attr == TaskAttr::Ordered {
            self.ordered_running = false;
        }
        self.release(ready);
    }

    /// Start the held tasks at the front that ordering allows (after a completion, or
    /// after a held task was removed), appending them to `ready`.
    pub fn release(&mut self, ready: &mut VecDeque<T>) {
        while let Some((front_attr, _)) = self.held.front() {
            let ok = match front_attr {
                TaskAttr::Ordered => self.running == 0,
                _ => !self.ordered_running,
            };
            if !ok {
                break;
            }
            let Some((a, t)) = self.held.pop_front() else {
                break;
            };
            self.start(a);
            ready.push_back(t);
            if a == TaskAttr::Ordered {
                break;
            }
        }
    }

    /// Remove held (not yet started) tasks matching `pred`, e.g. for an abort.
    pub fn remove_held(&mut self, mut pred: impl FnMut(&T) -> bool) -> Vec<T> {
        let mut removed = Vec::new();
        let mut kept = VecDeque::with_capacity(self.held.len());
        for (a, t) in self.held.drain(..) {
            if pred(&t) {
                removed.push(t);
            } else {
                kept.push_back((a, t));
            }
        }
        self.held = kept;
        removed
    }

    pub fn is_idle(&self) -> bool {
        self.running == 0 && self.held.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use TaskAttr::*;

    fn done(ts: &mut TaskSet<i32>, attr: TaskAttr) -> Vec<i32> {
        let mut ready = VecDeque::new();
        ts.complete(attr, &mut ready);
        ready.into()
    }

    #[test]
    fn simple_tasks_run_concurrently() {
        let mut ts = TaskSet::default();
        assert_eq!(ts.admit(Simple, 1), Some(1));
        assert_eq!(ts.admit(Simple, 2), Some(2));
    }

    #[test]
    fn ordered_waits_for_earlier_and_blocks_later() {
        let mut ts = TaskSet::default();
        assert_eq!(ts.admit(Simple, 1), Some(1));
        assert_eq!(ts.admit(Ordered, 2), None);
        assert_eq!(ts.admit(Simple, 3), None);
        // HEAD OF QUEUE jumps the queue.
        assert_eq!(ts.admit(HeadOfQueue, 4), Some(4));
        assert!(done(&mut ts, HeadOfQueue).is_empty());
        assert_eq!(done(&mut ts, Simple), vec![2]);
        assert_eq!(done(&mut ts, Ordered), vec![3]);
        assert!(done(&mut ts, Simple).is_empty());
        assert!(ts.is_idle());
    }

    #[test]
    fn held_tasks_can_be_aborted() {
        let mut ts = TaskSet::default();
        ts.admit(Ordered, 1);
        ts.admit(Simple, 2);
        ts.admit(Simple, 3);
        assert_eq!(ts.remove_held(|t| *t == 2), vec![2]);
        assert_eq!(done(&mut ts, Ordered), vec![3]);
    }
}
