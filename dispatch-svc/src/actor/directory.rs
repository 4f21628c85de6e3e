//! Endpoint id → actor: finds an endpoint's actor on this dispatcher, or
//! starts one on the arbiter the id hashes to, and hands it jobs without
//! ever waiting (see the back-pressure notes in [`super`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use actix::dev::SendError;
use actix::prelude::*;
use herald_common::keys::partition_of;
use herald_common::model::EndpointRecord;

use super::mailbox::{CurrentTokens, Deliver, Evict, Reload};
use super::{ActorSystem, EndpointActor, Home, MAILBOX_CAPACITY, QUEUE_CAPACITY};
use crate::Shared;
use crate::delivery::Work;
use crate::error::DispatchError;
use crate::records::HealthRecord;
use crate::send::host_limit::HostLimits;
use crate::send::http_client;
use crate::send::oauth::TokenCache;

/// Why a job could not be handed to an actor.
#[derive(Debug)]
pub enum Refused {
    /// The actor is busy: put the job off.
    Later(Box<Work>),
    /// There is no actor and the endpoint was not loaded: load it and
    /// dispatch again.
    NeedEndpoint(Box<Work>),
    /// The endpoint record does not exist.
    NoEndpoint(Box<Work>),
}

/// What starting an endpoint's actor needs: its record and stored health.
#[derive(Clone, Debug)]
pub struct Loaded {
    pub record: EndpointRecord,
    pub health: HealthRecord,
}

/// A live actor: its address, whether it wants jobs past the mailbox bound,
/// and how many jobs it holds (for feeding parked jobs back).
pub(super) struct Handle {
    pub(super) addr: Addr<EndpointActor>,
    fifo: Arc<AtomicBool>,
    queued: Arc<AtomicUsize>,
}

pub(super) type Directory = Mutex<HashMap<String, Handle>>;

pub(super) fn lock(directory: &Directory) -> MutexGuard<'_, HashMap<String, Handle>> {
    directory.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One actor thread and what its actors share.
struct Lane {
    arbiter: ArbiterHandle,
    client: reqwest::Client,
    hosts: Arc<HostLimits>,
}

/// Endpoint id → actor address.
pub struct Actors {
    shared: Arc<Shared>,
    /// Each arbiter with the HTTP client its actors' attempts use and the
    /// slots per host they share.
    arbiters: Vec<Lane>,
    directory: Arc<Directory>,
}

impl Actors {
    /// One HTTP client per arbiter: a pooled connection is driven by a task
    /// on the runtime that opened it, so a client shared across arbiters
    /// would hand every request and response between threads.
    pub fn new(shared: Arc<Shared>, system: &ActorSystem) -> Result<Self, DispatchError> {
        let threads = system.arbiters.len();
        let arbiters = system
            .arbiters
            .iter()
            .map(|arbiter| {
                Ok(Lane {
                    arbiter: arbiter.clone(),
                    client: http_client::build(shared.config.url_policy.clone(), shared.config.delivery_timeout)?,
                    hosts: Arc::new(HostLimits::share(shared.config.host_max_in_flight, threads)),
                })
            })
            .collect::<Result<_, DispatchError>>()?;
        Ok(Actors { shared, arbiters, directory: Arc::default() })
    }

    pub fn contains(&self, endpoint_id: &str) -> bool {
        lock(&self.directory).contains_key(endpoint_id)
    }

    pub fn len(&self) -> usize {
        lock(&self.directory).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Hands `work` to its endpoint's actor, starting one from `loaded` when
    /// there is none. `loaded` is `None` when the endpoint was not loaded
    /// (an actor existed then) and `Some(None)` when it does not exist.
    pub fn dispatch(&self, work: Work, loaded: Option<Option<&Loaded>>) -> Result<(), Refused> {
        let mut directory = lock(&self.directory);
        let id = work.taken.job.endpoint_id.clone();
        let mut work = work;
        if let Some(handle) = directory.get(&id) {
            if handle.addr.connected() && handle.fifo.load(AtomicOrdering::Acquire) {
                // Putting a fifo job off would reorder it; the actor's own
                // queue bound applies instead.
                handle.addr.do_send(Deliver(work));
                return Ok(());
            }
            match handle.addr.try_send(Deliver(work)) {
                Ok(()) => return Ok(()),
                Err(SendError::Full(Deliver(w))) => return Err(Refused::Later(Box::new(w))),
                Err(SendError::Closed(Deliver(w))) => {
                    directory.remove(&id);
                    work = w;
                }
            }
        }
        let loaded = match loaded {
            None => return Err(Refused::NeedEndpoint(Box::new(work))),
            Some(None) => return Err(Refused::NoEndpoint(Box::new(work))),
            Some(Some(loaded)) => loaded,
        };
        let Some(lane) = self.arbiters.get(partition_of(&id, self.arbiters.len() as u32) as usize) else {
            return Err(Refused::Later(Box::new(work)));
        };
        let fifo = Arc::new(AtomicBool::new(false));
        let queued = Arc::new(AtomicUsize::new(0));
        let home = Home {
            shared: self.shared.clone(),
            directory: self.directory.clone(),
            client: lane.client.clone(),
            hosts: lane.hosts.clone(),
        };
        let actor = EndpointActor::new(home, loaded, fifo.clone(), queued.clone());
        let addr = EndpointActor::start_in_arbiter(&lane.arbiter, move |ctx: &mut Context<EndpointActor>| {
            ctx.set_mailbox_capacity(MAILBOX_CAPACITY);
            actor
        });
        let sent = addr.try_send(Deliver(work));
        directory.insert(id, Handle { addr, fifo, queued });
        match sent {
            Ok(()) => Ok(()),
            Err(SendError::Full(Deliver(w)) | SendError::Closed(Deliver(w))) => Err(Refused::Later(Box::new(w))),
        }
    }

    /// How many parked jobs the endpoint's actor on this dispatcher can take
    /// now: `None` when it has none here, and nothing until its queue is
    /// down to half, so jobs come back in chunks rather than one by one.
    pub fn room_for_parked(&self, endpoint_id: &str) -> Option<usize> {
        let queued = lock(&self.directory).get(endpoint_id)?.queued.load(AtomicOrdering::Relaxed);
        Some((QUEUE_CAPACITY / 2).saturating_sub(queued))
    }

    /// The endpoint changed (`None`: deleted); its actor, if any, reloads.
    pub fn reload(&self, endpoint_id: &str, record: Option<EndpointRecord>) {
        if let Some(handle) = lock(&self.directory).get(endpoint_id) {
            // A rare control message; it must not be refused for a full mailbox.
            handle.addr.do_send(Reload(record));
        }
    }

    /// Stops the actors of partition `p`; their queued jobs stay pending.
    pub fn evict_partition(&self, p: u32, partitions: u32) {
        let mut directory = lock(&self.directory);
        let ids: Vec<String> = directory.keys().filter(|id| partition_of(id, partitions) == p).cloned().collect();
        for id in ids {
            if let Some(handle) = directory.remove(&id) {
                handle.addr.do_send(Evict);
            }
        }
    }

    pub fn evict_all(&self) {
        for (_, handle) in lock(&self.directory).drain() {
            handle.addr.do_send(Evict);
        }
    }

    /// The token cache of the endpoint's live actor on this dispatcher, so a
    /// test send reuses its token instead of requesting one of its own.
    /// `None` when no actor runs here (or it does not answer promptly).
    pub async fn token_cache(&self, endpoint_id: &str) -> Option<Arc<TokenCache>> {
        let addr = lock(&self.directory).get(endpoint_id).map(|handle| handle.addr.clone())?;
        tokio::time::timeout(TOKEN_CACHE_WAIT, addr.send(CurrentTokens)).await.ok()?.ok()
    }
}

/// How long a test send waits for the actor to hand over its token cache.
const TOKEN_CACHE_WAIT: Duration = Duration::from_secs(1);
