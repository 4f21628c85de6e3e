//! The messages an endpoint's actor takes, and how it handles them: a job
//! to queue, a changed endpoint record, eviction, and a loan of its token
//! cache to a test send.

use std::sync::Arc;

use actix::prelude::*;
use herald_common::model::EndpointRecord;
use tokio::time::Instant;

use super::EndpointActor;
use crate::delivery::{self, Work};
use crate::send::oauth::TokenCache;

#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct Deliver(pub(super) Work);

#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct Reload(pub(super) Option<EndpointRecord>);

#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct Evict;

#[derive(Message)]
#[rtype(result = "Arc<TokenCache>")]
pub(super) struct CurrentTokens;

impl Handler<Deliver> for EndpointActor {
    type Result = ();

    fn handle(&mut self, Deliver(work): Deliver, ctx: &mut Self::Context) {
        self.last_active = Instant::now();
        if let Some(reason) = self.refusal(&work) {
            self.fail_unsent(vec![work], reason);
            return;
        }
        // `fifo` never hands a job back: with the queue full, the newest is
        // let go instead (left pending), as parking would reorder it.
        match self.gate.enqueue(work, Instant::now()) {
            Ok(()) => self.pump(ctx),
            Err(work) => {
                self.shared.rt.spawn(delivery::park(self.shared.clone(), vec![work]));
            }
        }
    }
}

impl Handler<Reload> for EndpointActor {
    type Result = ();

    fn handle(&mut self, Reload(record): Reload, ctx: &mut Self::Context) {
        self.apply(record);
        self.pump(ctx);
    }
}

impl Handler<CurrentTokens> for EndpointActor {
    type Result = MessageResult<CurrentTokens>;

    fn handle(&mut self, _: CurrentTokens, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.tokens.clone())
    }
}

impl Handler<Evict> for EndpointActor {
    type Result = ();

    fn handle(&mut self, _: Evict, ctx: &mut Self::Context) {
        ctx.stop();
    }
}
