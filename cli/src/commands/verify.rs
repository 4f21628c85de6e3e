//! `herald verify`: checks one webhook's signature, for scripts and for
//! debugging a receiver that refuses Herald's deliveries.

use std::io::Read;

use crate::error::CliError;
use crate::options::VerifyArgs;
use crate::signature::{self, Secret};

pub fn run(args: VerifyArgs) -> Result<(), CliError> {
    let VerifyArgs { secret, id, timestamp, signature: signatures } = args;
    let secret = Secret::parse(&secret)?;
    let mut body = Vec::new();
    std::io::stdin().read_to_end(&mut body).map_err(CliError::io("reading the body from standard input"))?;
    secret.verify(&id, &timestamp, &signatures, &body, signature::now())?;
    crate::output::line("signature valid");
    Ok(())
}
