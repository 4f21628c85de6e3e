//! Which deliveries a listing or a tail follows: the flags and the query
//! parameters they become.

use crate::client::Call;

#[derive(Clone, Debug, clap::Args)]
pub struct DeliveryFilter {
    /// Only this endpoint's deliveries.
    #[arg(long, value_name = "ENDPOINT_ID")]
    pub endpoint: Option<String>,
    /// Only this event's deliveries.
    #[arg(long, value_name = "EVENT_ID")]
    pub event: Option<String>,
    #[arg(long, value_parser = ["pending", "delivered", "retrying", "failed"])]
    pub status: Option<String>,
}

impl DeliveryFilter {
    pub fn apply<'a>(&self, call: Call<'a>) -> Call<'a> {
        call.query_opt("endpointId", self.endpoint.as_deref())
            .query_opt("eventId", self.event.as_deref())
            .query_opt("status", self.status.as_deref())
    }
}
