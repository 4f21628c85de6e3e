//! The actix system the endpoint actors run on: its own thread with a
//! current-thread runtime, and a fixed set of arbiters (threads) the actors
//! are spread over.

use actix::prelude::*;

use crate::error::DispatchError;

/// The actix system on its own thread, with `threads` arbiters.
pub struct ActorSystem {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    pub(super) arbiters: Vec<ArbiterHandle>,
}

impl ActorSystem {
    pub fn start(threads: usize) -> Result<Self, DispatchError> {
        let threads = threads.max(1);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<Vec<ArbiterHandle>, String>>();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new().name("herald-actors".into()).spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(runtime) => runtime,
                Err(e) => {
                    let _ = ready_tx.send(Err(e.to_string()));
                    return;
                }
            };
            let system = System::with_tokio_rt(move || runtime);
            let arbiters = system.block_on(async move {
                let mut arbiters = Vec::with_capacity(threads);
                for _ in 0..threads {
                    match Arbiter::try_new() {
                        Ok(arbiter) => arbiters.push(arbiter),
                        Err(e) => {
                            let _ = ready_tx.send(Err(e.to_string()));
                            return arbiters;
                        }
                    }
                }
                let _ = ready_tx.send(Ok(arbiters.iter().map(Arbiter::handle).collect()));
                // Also ends when the sender is dropped without a word.
                let _ = stop_rx.await;
                arbiters
            });
            for arbiter in &arbiters {
                arbiter.stop();
            }
            for arbiter in arbiters {
                let _ = arbiter.join();
            }
        })?;
        let arbiters = match ready_rx.recv() {
            Ok(Ok(arbiters)) => arbiters,
            Ok(Err(e)) => return Err(DispatchError::Actors(e)),
            Err(_) => return Err(DispatchError::Actors("actor thread ended during start-up".into())),
        };
        Ok(ActorSystem { stop: Some(stop_tx), thread: Some(thread), arbiters })
    }

    /// Stops every actor and waits for the threads to end.
    pub fn shutdown(mut self) {
        self.stop_now();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }

    fn stop_now(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl Drop for ActorSystem {
    fn drop(&mut self) {
        self.stop_now();
    }
}
