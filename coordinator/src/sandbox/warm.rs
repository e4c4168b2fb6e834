//! Warm pools a provider keeps itself (the Kubernetes Sandbox API's `SandboxWarmPool`): the
//! coordinator asks for a pool's size and the environment its sandboxes start with, and takes a
//! sandbox from it with a claim; the provider's own machinery makes, replaces and hands out the
//! sandboxes. Every sandbox of such a pool starts from one template, so none carries an id or a
//! credential of its own: its worker enrolls with the pool's registration credential, and the
//! coordinator asks the provider ([`WarmPools::member`]) whether the sandbox it names is an
//! unclaimed member of that pool before it records a standby for it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures_util::future::BoxFuture;

use super::{SandboxError, SandboxHandle, SpawnRequest};

/// A sandbox of a provider's pool, as the provider verified it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolMember {
    /// The sandbox, as the provider names it (its `status`, `terminate`).
    pub handle: SandboxHandle,
    /// The pool's key (the image, `""` for the provider's default).
    pub pool: String,
    /// When the provider made it (milliseconds since the epoch): the start of its refill time.
    pub created_ms: i64,
}

/// A provider's own warm pools.
pub trait WarmPools: Send + Sync + std::fmt::Debug {
    /// The provider's name of the pool of `pool` (an image, `""` for the default): what its
    /// sandboxes enroll with and what the registration credential is derived from.
    fn pool_name(&self, pool: &str) -> String;

    /// Creates or updates the pool of `pool` to `replicas` sandboxes whose worker starts with
    /// `env` (the standby environment: the coordinator's URL, the pool's name and registration
    /// credential, the idle limit).
    fn keep<'a>(
        &'a self,
        pool: &'a str,
        replicas: u32,
        env: &'a BTreeMap<String, String>,
    ) -> BoxFuture<'a, Result<(), SandboxError>>;

    /// The sandbox `pod` (with its `uid`) when it is a live, unclaimed member of the pool named
    /// `pool_name`; `None` otherwise (another pool's, claimed, ended, or no such sandbox).
    fn member<'a>(
        &'a self,
        pool_name: &'a str,
        pod: &'a str,
        uid: &'a str,
    ) -> BoxFuture<'a, Result<Option<PoolMember>, SandboxError>>;

    /// Tends the pool of `pool`: deletes its waiting sandboxes that ended (a pool's controller
    /// does not replace an ended sandbox, only a missing one), and answers the handles of the
    /// live sandboxes the pool made, claimed ones included.
    fn tend<'a>(&'a self, pool: &'a str) -> BoxFuture<'a, Result<BTreeSet<String>, SandboxError>>;

    /// Claims a warm sandbox of the pool of `request.image` for `request`'s sandbox: the handle
    /// of the sandbox the pool handed out, or `None` (the claim withdrawn) when it handed out
    /// none within `bound` or only a freshly made one.
    fn claim<'a>(
        &'a self,
        request: &'a SpawnRequest,
        bound: Duration,
    ) -> BoxFuture<'a, Result<Option<SandboxHandle>, SandboxError>>;

    /// Makes the claimed sandbox `handle` `request`'s: labelled as its sandbox and followed as
    /// every sandbox of this provider (its status, its end, its deletion with the claim).
    fn adopt<'a>(
        &'a self,
        handle: &'a SandboxHandle,
        request: &'a SpawnRequest,
    ) -> BoxFuture<'a, Result<(), SandboxError>>;

    /// Withdraws `request`'s claim (its sandbox goes with it).
    fn release<'a>(&'a self, request: &'a SpawnRequest) -> BoxFuture<'a, Result<(), SandboxError>>;
}
