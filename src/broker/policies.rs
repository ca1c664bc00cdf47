//! Policies at work: `set_policy` / `clear_policy` and their operator-policy twins change a
//! vhost's policy sets (store commit first, then memory, like the other operator changes) and
//! re-apply them at once to every queue and exchange of the vhost; a queue or exchange picks up
//! its policy when it is declared or recovered. The model (validation, matching, merging) is in
//! `policy.rs`.

use super::exchange::Exchange;
use super::policy::{Applied, ApplyTo, Policy, PolicyError, PolicyKind, PolicySet, parse_definition};
use super::queue::Queue;
use super::{Broker, Vhost};
use crate::store::definitions::{PolicyDef, VhostDef};
use std::sync::Arc;

/// Why a policy command failed.
#[derive(Debug)]
pub enum PolicyCommandError {
    NoSuchVhost(String),
    Invalid(PolicyError),
    /// clear of a policy that does not exist (rabbitmqctl: "Parameter does not exist").
    NotFound,
    Store(String),
}

impl From<PolicyError> for PolicyCommandError {
    fn from(e: PolicyError) -> Self {
        PolicyCommandError::Invalid(e)
    }
}

impl From<super::access::AccessError> for PolicyCommandError {
    fn from(e: super::access::AccessError) -> Self {
        PolicyCommandError::Store(e.to_string())
    }
}

fn to_defs(set: &PolicySet) -> Vec<PolicyDef> {
    set.iter()
        .map(|p| PolicyDef {
            name: p.name.clone(),
            pattern: p.pattern.clone(),
            apply_to: p.apply_to.as_str().into(),
            priority: p.priority,
            definition: p.definition.clone(),
        })
        .collect()
}

/// The policies of a stored vhost (recovery). A stored policy that no longer validates is
/// skipped with a warning.
pub fn load(vh: &Vhost, def: &VhostDef) {
    for (defs, set, kind) in
        [(&def.policies, &vh.policies, PolicyKind::User), (&def.operator_policies, &vh.operator_policies, PolicyKind::Operator)]
    {
        let mut set = set.write();
        for d in defs {
            let json = serde_json::to_string(&d.definition).unwrap_or_default();
            let p = ApplyTo::parse(&d.apply_to)
                .map_err(PolicyError::Invalid)
                .and_then(|a| Ok((a, parse_definition(kind, &json)?)))
                .and_then(|(a, definition)| Policy::new(&d.name, &d.pattern, a, d.priority, definition));
            match p {
                Ok(p) => set.put(p),
                Err(e) => tracing::warn!(vhost = %vh.name, policy = %d.name, "stored policy skipped: {e}"),
            }
        }
    }
}

impl Vhost {
    /// The vhost's definition record as it is now (limits and policies).
    pub fn def(&self) -> VhostDef {
        let meta = self.metadata.read().clone();
        VhostDef {
            name: self.name.clone(),
            description: meta.description,
            tags: meta.tags,
            limits: self.limits.read().clone(),
            policies: to_defs(&self.policies.read()),
            operator_policies: to_defs(&self.operator_policies.read()),
        }
    }

    fn resolve(&self, name: &str, queue: bool) -> Applied {
        Applied::resolve(&self.policies.read(), &self.operator_policies.read(), name, queue)
    }

    /// Applies the policies matching queue `q` (at declare, at recovery, after a change).
    pub fn attach_policy_queue(&self, q: &Arc<Queue>) {
        q.set_policy(self.resolve(&q.name, true));
    }

    /// Applies the policies matching exchange `x`.
    pub fn attach_policy_exchange(&self, x: &Exchange) {
        let a = self.resolve(&x.name, false);
        x.policy.store((a.policy.is_some() || a.operator_policy.is_some()).then(|| Arc::new(a)));
    }

    /// Re-applies the policies to every queue and exchange (after a policy changed).
    pub fn apply_policies(&self) {
        let queues: Vec<Arc<Queue>> = self.queues.read().values().cloned().collect();
        for q in queues {
            self.attach_policy_queue(&q);
        }
        let exchanges: Vec<Arc<Exchange>> = self.exchanges.read().values().cloned().collect();
        for x in exchanges {
            self.attach_policy_exchange(&x);
        }
    }

    fn policy_set(&self, kind: PolicyKind) -> &parking_lot::RwLock<PolicySet> {
        match kind {
            PolicyKind::User => &self.policies,
            PolicyKind::Operator => &self.operator_policies,
        }
    }
}

impl Broker {
    /// `set_policy` / `set_operator_policy`: validates in RabbitMQ's order (pattern, apply-to,
    /// definition), stores, then applies to the vhost's queues and exchanges.
    #[allow(clippy::too_many_arguments)]
    pub fn set_policy(
        &self,
        kind: PolicyKind,
        vhost: &str,
        name: &str,
        pattern: &str,
        apply_to: &str,
        priority: i64,
        definition: &str,
    ) -> Result<(), PolicyCommandError> {
        let _g = self.admin_lock.lock();
        let vh = self.vhost(vhost).ok_or_else(|| PolicyCommandError::NoSuchVhost(vhost.into()))?;
        let definition = super::policy::decode_definition(definition)?;
        super::policy::compile_pattern(pattern)?;
        let apply_to = ApplyTo::parse(apply_to).map_err(PolicyError::Invalid)?;
        let definition = super::policy::validate_definition(kind, definition)?;
        let policy = Policy::new(name, pattern, apply_to, priority, definition)?;
        let mut set = vh.policy_set(kind).read().clone();
        set.put(policy);
        self.commit_policies(&vh, kind, set)
    }

    /// `clear_policy` / `clear_operator_policy`.
    pub fn clear_policy(&self, kind: PolicyKind, vhost: &str, name: &str) -> Result<(), PolicyCommandError> {
        let _g = self.admin_lock.lock();
        let vh = self.vhost(vhost).ok_or(PolicyCommandError::NotFound)?;
        let mut set = vh.policy_set(kind).read().clone();
        if !set.remove(name) {
            return Err(PolicyCommandError::NotFound);
        }
        self.commit_policies(&vh, kind, set)
    }

    fn commit_policies(&self, vh: &Arc<Vhost>, kind: PolicyKind, set: PolicySet) -> Result<(), PolicyCommandError> {
        let mut def = vh.def();
        match kind {
            PolicyKind::User => def.policies = to_defs(&set),
            PolicyKind::Operator => def.operator_policies = to_defs(&set),
        }
        self.write(|s| s.put_vhost(&def))?;
        *vh.policy_set(kind).write() = set;
        vh.apply_policies();
        Ok(())
    }

    /// A vhost's policies of one kind, in `list_policies` order; None if the vhost is missing.
    pub fn policies(&self, kind: PolicyKind, vhost: &str) -> Option<Vec<Policy>> {
        self.vhost(vhost).map(|v| v.policy_set(kind).read().iter().cloned().collect())
    }
}
