//! `warrenctl reset` / `force_reset` (RabbitMQ's on a single node): the node back to its first
//! start. Every vhost (with its queues and their stored messages, exchanges, bindings, policies,
//! parameters and limits), every user (with its permissions, topic permissions and limits) and
//! every global parameter is deleted, in memory and in the store. The config's default user and
//! vhost come back with [`Broker::restore_defaults`] at `start_app`, or at the next start of the
//! process (which then finds an empty store), as RabbitMQ recreates them when it boots on a
//! fresh database. Runs only while the app is stopped (no connection is open).

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
