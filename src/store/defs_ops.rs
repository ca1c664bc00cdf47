//! Definition changes (vhosts, users, permissions, exchanges, queues, bindings): the `Store`
//! methods that submit them to the writer thread and wait for their commit, and `apply_def`,
//! which the writer runs inside its transaction.

use redb::{ReadableDatabase, ReadableTable, WriteTransaction};

use super::*;

/// A definition change, applied on the writer thread.
pub(crate) enum DefOp {
    PutVhost(VhostDef),
    DeleteVhost(String),
    PutUser(UserDef),
    DeleteUser(String),
    PutPermission(PermissionDef),
    DeletePermission { user: String, vhost: String },
    PutTopicPermission(TopicPermissionDef),
    /// All of the user's rows in the vhost, or the one of `exchange`.
    DeleteTopicPermissions { user: String, vhost: String, exchange: Option<String> },
    PutExchange(ExchangeDef),
    DeleteExchange { vhost: String, name: String },
    PutQueue(QueueDef),
    DeleteQueue { vhost: String, name: String },
    PutBinding(BindingDef),
    DeleteBinding(BindingDef),
    /// A global parameter: its name and JSON value.
    PutGlobal(String, Vec<u8>),
    DeleteGlobal(String),
}

pub(crate) enum DefReply {
    Done,
    Existed(bool),
    QueueId(u64),
}

impl Store {
    fn def(&self, op: DefOp) -> Pending<DefReply> {
        let (reply, pending) = Pending::channel();
        self.log.send(Op::Def { op, reply });
        pending
    }

    // ---- definitions. Each returns once its transaction is durable. -------
    // The wait blocks the calling thread for about one commit (it does not
    // need a runtime); from async code prefer `spawn_blocking`.

    pub fn put_vhost(&self, def: &VhostDef) -> Result<(), StoreError> {
        self.def(DefOp::PutVhost(def.clone())).wait().map(|_| ())
    }

    /// Deletes the vhost and everything in it: exchanges, queues (with their
    /// messages), bindings and permissions. Returns whether it existed.
    pub fn delete_vhost(&self, name: &str) -> Result<bool, StoreError> {
        existed(self.def(DefOp::DeleteVhost(name.into())).wait()?)
    }

    pub fn put_user(&self, def: &UserDef) -> Result<(), StoreError> {
        self.def(DefOp::PutUser(def.clone())).wait().map(|_| ())
    }

    /// Deletes the user and its permissions.
    pub fn delete_user(&self, name: &str) -> Result<bool, StoreError> {
        existed(self.def(DefOp::DeleteUser(name.into())).wait()?)
    }

    pub fn put_permission(&self, def: &PermissionDef) -> Result<(), StoreError> {
        self.def(DefOp::PutPermission(def.clone()))
            .wait()
            .map(|_| ())
    }

    pub fn delete_permission(&self, user: &str, vhost: &str) -> Result<bool, StoreError> {
        existed(
            self.def(DefOp::DeletePermission {
                user: user.into(),
                vhost: vhost.into(),
            })
            .wait()?,
        )
    }

    pub fn put_topic_permission(&self, def: &TopicPermissionDef) -> Result<(), StoreError> {
        self.def(DefOp::PutTopicPermission(def.clone())).wait().map(|_| ())
    }

    /// Deletes the user's topic permissions in the vhost: all, or the one of `exchange`.
    /// Returns whether any existed.
    pub fn delete_topic_permissions(&self, user: &str, vhost: &str, exchange: Option<&str>) -> Result<bool, StoreError> {
        let op = DefOp::DeleteTopicPermissions { user: user.into(), vhost: vhost.into(), exchange: exchange.map(Into::into) };
        existed(self.def(op).wait()?)
    }

    pub fn put_exchange(&self, def: &ExchangeDef) -> Result<(), StoreError> {
        self.def(DefOp::PutExchange(def.clone())).wait().map(|_| ())
    }

    /// Deletes the exchange and every binding from or to it.
    pub fn delete_exchange(&self, vhost: &str, name: &str) -> Result<bool, StoreError> {
        self.submit_delete_exchange(vhost, name).wait()
    }

    /// `delete_exchange` without the wait: the op is queued for the writer when this returns,
    /// ahead of any op submitted after it (the writer applies them in order), so a caller can
    /// submit it under its own lock and wait for the commit after releasing that lock.
    pub fn submit_delete_exchange(&self, vhost: &str, name: &str) -> Existed {
        Existed(self.def(DefOp::DeleteExchange { vhost: vhost.into(), name: name.into() }))
    }

    /// Stores a durable queue and returns its `queue_id`. Re-putting an
    /// existing (vhost, name) updates the definition and keeps its id.
    pub fn put_queue(&self, def: &QueueDef) -> Result<u64, StoreError> {
        match self.def(DefOp::PutQueue(def.clone())).wait()? {
            DefReply::QueueId(id) => Ok(id),
            _ => Err(StoreError::Database("unexpected reply".into())),
        }
    }

    /// Deletes the queue, all its messages (including appends queued before
    /// this call) and every binding to it.
    pub fn delete_queue(&self, vhost: &str, name: &str) -> Result<bool, StoreError> {
        self.submit_delete_queue(vhost, name).wait()
    }

    /// `delete_queue` without the wait (see `submit_delete_exchange`).
    pub fn submit_delete_queue(&self, vhost: &str, name: &str) -> Existed {
        Existed(self.def(DefOp::DeleteQueue { vhost: vhost.into(), name: name.into() }))
    }

    pub fn put_binding(&self, def: &BindingDef) -> Result<(), StoreError> {
        self.submit_put_binding(def).wait()
    }

    /// Queues a binding's write without waiting (the writer applies ops in submission order).
    pub fn submit_put_binding(&self, def: &BindingDef) -> Written {
        Written(self.def(DefOp::PutBinding(def.clone())))
    }

    pub fn delete_binding(&self, def: &BindingDef) -> Result<bool, StoreError> {
        self.submit_delete_binding(def).wait()
    }

    /// Queues a binding's delete without waiting (see `submit_delete_queue`).
    pub fn submit_delete_binding(&self, def: &BindingDef) -> Existed {
        Existed(self.def(DefOp::DeleteBinding(def.clone())))
    }

    /// Stores global parameter `name` (a JSON value).
    pub fn put_global_parameter(&self, name: &str, value: &serde_json::Value) -> Result<(), StoreError> {
        self.def(DefOp::PutGlobal(name.into(), value.to_string().into_bytes())).wait().map(|_| ())
    }

    /// Removes global parameter `name`; returns whether it existed.
    pub fn delete_global_parameter(&self, name: &str) -> Result<bool, StoreError> {
        existed(self.def(DefOp::DeleteGlobal(name.into())).wait()?)
    }

    // ---- reads --------------------------------------------------------------

    /// All definitions, each list in key order.
    pub fn load_definitions(&self) -> Result<Definitions, StoreError> {
        let db = self.db.get()?; // held until the read transaction ends (see `DbSlot::reopen`)
        let rtx = db.begin_read()?;
        let mut d = Definitions::default();
        for e in rtx.open_table(VHOSTS)?.range::<&str>(..)? {
            d.vhosts.push(from_json("v1.vhosts", e?.1.value())?);
        }
        for e in rtx.open_table(USERS)?.range::<&str>(..)? {
            d.users.push(from_json("v1.users", e?.1.value())?);
        }
        for e in rtx.open_table(PERMISSIONS)?.range::<(&str, &str)>(..)? {
            d.permissions
                .push(from_json("v1.permissions", e?.1.value())?);
        }
        d.topic_permissions = topic_permissions::load(&rtx)?;
        for e in rtx.open_table(EXCHANGES)?.range::<(&str, &str)>(..)? {
            d.exchanges.push(from_json("v1.exchanges", e?.1.value())?);
        }
        for e in rtx.open_table(QUEUES)?.range::<(&str, &str)>(..)? {
            d.queues.push(from_json("v1.queues", e?.1.value())?);
        }
        for e in rtx.open_table(BINDINGS)?.range::<&[u8]>(..)? {
            d.bindings.push(from_json("v1.bindings", e?.1.value())?);
        }
        d.global_parameters = global_parameters::load(&rtx)?;
        Ok(d)
    }
}

/// A submitted delete: `wait` for its commit and whether the object existed.
#[must_use = "wait for the delete to be durable"]
pub struct Existed(Pending<DefReply>);

impl Existed {
    pub fn wait(self) -> Result<bool, StoreError> {
        existed(self.0.wait()?)
    }
}

/// A submitted write: `wait` for its commit.
#[must_use = "wait for the write to be durable"]
pub struct Written(Pending<DefReply>);

impl Written {
    pub fn wait(self) -> Result<(), StoreError> {
        self.0.wait().map(|_| ())
    }
}

pub(super) fn existed(r: DefReply) -> Result<bool, StoreError> {
    match r {
        DefReply::Existed(b) => Ok(b),
        _ => Err(StoreError::Database("unexpected reply".into())),
    }
}

pub(super) fn from_json<T: serde::de::DeserializeOwned>(
    table: &'static str,
    v: &[u8],
) -> Result<T, StoreError> {
    serde_json::from_slice(v).map_err(|e| StoreError::Record {
        table,
        detail: e.to_string(),
    })
}

pub(super) fn to_json<T: serde::Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("definitions always serialize")
}

pub(super) fn next_queue_id(txn: &WriteTransaction) -> Result<u64, StoreError> {
    let mut meta = txn.open_table(META)?;
    let id = meta
        .get(META_NEXT_QUEUE_ID)?
        .and_then(|v| <[u8; 8]>::try_from(v.value()).ok())
        .map(u64::from_le_bytes)
        .ok_or_else(|| StoreError::Record {
            table: "meta",
            detail: "next_queue_id missing or malformed".into(),
        })?;
    meta.insert(META_NEXT_QUEUE_ID, &(id + 1).to_le_bytes()[..])?;
    Ok(id)
}

pub(super) fn delete_queue_messages(txn: &WriteTransaction, queue_id: u64) -> Result<(), StoreError> {
    txn.open_table(MESSAGES)?
        .retain_in(queue_range(queue_id), |_, _| false)?;
    Ok(())
}

/// Removes the bindings for which `drop_it` is true.
pub(super) fn retain_bindings(
    txn: &WriteTransaction,
    mut drop_it: impl FnMut(&BindingDef) -> bool,
) -> Result<(), StoreError> {
    let mut table = txn.open_table(BINDINGS)?;
    let mut bad = None;
    table.retain(|_, v| match serde_json::from_slice::<BindingDef>(v) {
        Ok(b) => !drop_it(&b),
        Err(e) => {
            bad = Some(e.to_string());
            true
        }
    })?;
    match bad {
        Some(detail) => Err(StoreError::Record {
            table: "v1.bindings",
            detail,
        }),
        None => Ok(()),
    }
}

/// Applies one definition change inside the writer's transaction.
pub(crate) fn apply_def(txn: &WriteTransaction, op: DefOp) -> Result<DefReply, StoreError> {
    match op {
        DefOp::PutVhost(d) => {
            txn.open_table(VHOSTS)?
                .insert(d.name.as_str(), &to_json(&d)[..])?;
            Ok(DefReply::Done)
        }
        DefOp::DeleteVhost(name) => {
            let existed = txn.open_table(VHOSTS)?.remove(name.as_str())?.is_some();
            txn.open_table(EXCHANGES)?.retain(|k, _| k.0 != name)?;
            let mut ids = Vec::new();
            txn.open_table(QUEUES)?.retain(|k, v| {
                if k.0 == name {
                    if let Ok(r) = serde_json::from_slice::<QueueRecord>(v) {
                        ids.push(r.queue_id);
                    }
                    false
                } else {
                    true
                }
            })?;
            for id in ids {
                delete_queue_messages(txn, id)?;
            }
            retain_bindings(txn, |b| b.vhost == name)?;
            txn.open_table(PERMISSIONS)?.retain(|k, _| k.1 != name)?;
            topic_permissions::delete_vhost(txn, &name)?;
            Ok(DefReply::Existed(existed))
        }
        DefOp::PutUser(d) => {
            txn.open_table(USERS)?
                .insert(d.name.as_str(), &to_json(&d)[..])?;
            Ok(DefReply::Done)
        }
        DefOp::DeleteUser(name) => {
            let existed = txn.open_table(USERS)?.remove(name.as_str())?.is_some();
            txn.open_table(PERMISSIONS)?.retain(|k, _| k.0 != name)?;
            topic_permissions::delete_user(txn, &name)?;
            Ok(DefReply::Existed(existed))
        }
        DefOp::PutPermission(d) => {
            txn.open_table(PERMISSIONS)?
                .insert((d.user.as_str(), d.vhost.as_str()), &to_json(&d)[..])?;
            Ok(DefReply::Done)
        }
        DefOp::DeletePermission { user, vhost } => {
            let existed = txn
                .open_table(PERMISSIONS)?
                .remove((user.as_str(), vhost.as_str()))?
                .is_some();
            Ok(DefReply::Existed(existed))
        }
        DefOp::PutTopicPermission(d) => {
            topic_permissions::put(txn, &d)?;
            Ok(DefReply::Done)
        }
        DefOp::PutGlobal(name, value) => {
            global_parameters::put(txn, &name, &value)?;
            Ok(DefReply::Done)
        }
        DefOp::DeleteGlobal(name) => Ok(DefReply::Existed(global_parameters::delete(txn, &name)?)),
        DefOp::DeleteTopicPermissions { user, vhost, exchange } => {
            Ok(DefReply::Existed(topic_permissions::delete(txn, &user, &vhost, exchange.as_deref())?))
        }
        DefOp::PutExchange(d) => {
            txn.open_table(EXCHANGES)?
                .insert((d.vhost.as_str(), d.name.as_str()), &to_json(&d)[..])?;
            Ok(DefReply::Done)
        }
        DefOp::DeleteExchange { vhost, name } => {
            let existed = txn
                .open_table(EXCHANGES)?
                .remove((vhost.as_str(), name.as_str()))?
                .is_some();
            retain_bindings(txn, |b| {
                b.vhost == vhost
                    && (b.source == name || (b.destination_is_exchange && b.destination == name))
            })?;
            Ok(DefReply::Existed(existed))
        }
        DefOp::PutQueue(def) => {
            let existing: Option<QueueRecord> = match txn
                .open_table(QUEUES)?
                .get((def.vhost.as_str(), def.name.as_str()))?
            {
                Some(v) => Some(from_json("v1.queues", v.value())?),
                None => None,
            };
            let queue_id = match existing {
                Some(r) => r.queue_id,
                None => next_queue_id(txn)?,
            };
            let rec = QueueRecord { queue_id, def };
            txn.open_table(QUEUES)?.insert(
                (rec.def.vhost.as_str(), rec.def.name.as_str()),
                &to_json(&rec)[..],
            )?;
            Ok(DefReply::QueueId(queue_id))
        }
        DefOp::DeleteQueue { vhost, name } => {
            let removed: Option<QueueRecord> = match txn
                .open_table(QUEUES)?
                .remove((vhost.as_str(), name.as_str()))?
            {
                Some(v) => Some(from_json("v1.queues", v.value())?),
                None => None,
            };
            if let Some(r) = &removed {
                delete_queue_messages(txn, r.queue_id)?;
            }
            retain_bindings(txn, |b| {
                b.vhost == vhost && !b.destination_is_exchange && b.destination == name
            })?;
            Ok(DefReply::Existed(removed.is_some()))
        }
        DefOp::PutBinding(d) => {
            txn.open_table(BINDINGS)?
                .insert(&d.key_bytes()[..], &to_json(&d)[..])?;
            Ok(DefReply::Done)
        }
        DefOp::DeleteBinding(d) => {
            let existed = txn
                .open_table(BINDINGS)?
                .remove(&d.key_bytes()[..])?
                .is_some();
            Ok(DefReply::Existed(existed))
        }
    }
}
