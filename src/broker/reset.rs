//! `warrenctl reset` / `force_reset` (RabbitMQ's on a single node): the node back to its first
//! start. Every vhost (with its queues and their stored messages, exchanges, bindings, policies,
//! parameters and limits), every user (with its permissions, topic permissions and limits) and
//! every global parameter is deleted, in memory and in the store. The config's default user and
//! vhost come back with [`Broker::restore_defaults`] at `start_app`, or at the next start of the
//! process (which then finds an empty store), as RabbitMQ recreates them when it boots on a
//! fresh database. Runs only while the app is stopped (no connection is open). Also what
//! `stop_app` drops, as a restart would: the non-durable queues and exchanges.

use super::Broker;
use super::access::AccessError;

impl Broker {
    /// Deletes every vhost, user and global parameter.
    pub fn reset(&self) -> Result<(), AccessError> {
        for v in self.vhosts() {
            match self.delete_vhost(&v.name) {
                Ok(()) | Err(AccessError::NoSuchVhost(_)) => {}
                Err(e) => return Err(e),
            }
        }
        for u in self.users() {
            match self.delete_user(&u.name) {
                Ok(()) | Err(AccessError::NoSuchUser(_)) => {}
                Err(e) => return Err(e),
            }
        }
        for (name, _) in self.global_parameters() {
            self.clear_global_parameter(&name).map_err(|e| AccessError::Store(e.0))?;
        }
        tracing::info!("node reset: every vhost, user and global parameter deleted");
        Ok(())
    }

    /// What a restart of the node loses, dropped at `stop_app` as RabbitMQ 3.10 drops it then
    /// (observed: after `stop_app` / `start_app` its non-durable queues and exchanges are gone):
    /// every non-durable queue (with its messages and bindings) and non-durable exchange.
    /// Transient messages on durable queues stay (RabbitMQ loses those too; Warren keeps them).
    /// Returns how many queues and exchanges went.
    pub fn drop_non_durable(&self) -> (usize, usize) {
        let (mut nq, mut nx) = (0, 0);
        for vh in self.vhosts() {
            let queues: Vec<_> = vh.queues.read().values().filter(|q| !q.durable).cloned().collect();
            for q in queues {
                vh.remove_queue(&q);
                nq += 1;
            }
            let exchanges: Vec<String> = vh.exchanges.read().values().filter(|x| !x.durable).map(|x| x.name.clone()).collect();
            for x in exchanges {
                if vh.delete_exchange(&x, false).is_ok() {
                    nx += 1;
                }
            }
        }
        if nq + nx > 0 {
            tracing::info!("app stopped: dropped {nq} non-durable queues and {nx} non-durable exchanges");
        }
        (nq, nx)
    }

    /// After a reset (no vhost and no user left): the config's default user and vhost, and a new
    /// `internal_cluster_id`, as at first start. Returns whether it created them.
    pub fn restore_defaults(&self) -> Result<bool, AccessError> {
        if !self.vhosts.read().is_empty() || !self.users.read().is_empty() {
            return Ok(false);
        }
        super::persist::create_defaults(self, self.store.as_deref())?;
        if let Some(store) = &self.store {
            self.recover_global_parameters(Vec::new(), store)?;
        }
        self.bump_auth_epoch();
        let a = &self.config.auth;
        tracing::info!("after reset: created user '{}' and vhost '{}'", a.default_user, a.default_vhost);
        Ok(true)
    }
}
