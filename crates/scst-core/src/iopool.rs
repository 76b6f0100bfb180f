//! The I/O thread pool: where commands that may block (page-cache misses, writes,
//! flushes) run, so that network threads never wait on storage.

use crossbeam_channel::{unbounded, Sender};

type Job = Box<dyn FnOnce() + Send + 'static>;

pub struct IoPool {
    tx: Option<Sender<Job>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl IoPool {
    pub fn new(threads: usize) -> IoPool {
        let (tx, rx) = unbounded::<Job>();
        let threads = (0..threads.max(1))
            .map(|i| {
                let rx = rx.clone();
                std::thread::Builder::new()
                    .name(format!("scst-io{i}"))
                    .spawn(move || {
                        while let Ok(job) = rx.recv() {
                            job();
                        }
                    })
                    .expect("spawn I/O thread")
            })
            .collect();
        IoPool {
            tx: Some(tx),
            threads,
        }
    }

    pub fn spawn(&self, job: impl FnOnce() + Send + 'static) {
        if let Some(tx) = &self.tx {
            // The receivers live as long as the pool, so this cannot fail.
            let _ = tx.send(Box::new(job));
        }
    }
}

impl Drop for IoPool {
    fn drop(&mut self) {
        self.tx.take();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
