//! Registered host modules and the guest's handles to them.
//!
//! Version rule (as in abi.h): versions are `(major << 16) | minor`; a bind for
//! `v` matches a registered module of the same name with the same major and a
//! minor >= v's minor, preferring the highest such minor.
//!
//! Handles are `(generation << 16) | (slot + 1)`: never 0 (the system module),
//! always positive as an `int`, and a stale handle to a reused slot is rejected.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use guest_kmod_bindings::vmrpc_version_parts as split;
use guest_kmod_bindings::{VMRPC_EBADHANDLE, VMRPC_EGONE, VMRPC_ELIMIT, VMRPC_ENOMODULE};

use super::module::HostModule;

/// Most handles one VM may hold at once.
pub const MAX_HANDLES: usize = 4096;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RegistryError {
    /// register_hm of a (name, version) already registered
    #[error("module {0} version {1}.{2} is already registered")]
    AlreadyRegistered(String, u32, u32),
    /// unregister_hm of a (name, version) not registered
    #[error("module {0} version {1}.{2} is not registered")]
    NotRegistered(String, u32, u32),
    /// a module name that cannot be bound
    #[error("module name must be 1 to 255 bytes, got {0}")]
    BadName(usize),
    /// a name with a NUL byte: C guests pass names as strings and cannot name it
    #[error("module name {0:?} contains a NUL byte")]
    NulInName(String),
}

pub struct Registered {
    pub name: String,
    pub version: u32,
    pub module: Arc<dyn HostModule>,
    alive: AtomicBool,
}

impl Registered {
    pub fn alive(&self) -> bool {
        self.alive.load(Ordering::Acquire)
    }
}

#[derive(Default)]
struct Inner {
    modules: HashMap<String, Vec<Arc<Registered>>>,
    /// Names once registered and now gone: binds to them report VMRPC_EGONE.
    gone: HashSet<String>,
    handles: Vec<Option<Arc<Registered>>>,
    generations: Vec<u16>,
}

/// A registry's handles, by module name (`export_handles`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HandleTable {
    live: Vec<(usize, String, u32)>,
    generations: Vec<u16>,
}

#[derive(Default)]
pub struct Registry {
    inner: Mutex<Inner>,
}

impl Registry {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn register(
        &self,
        name: &str,
        version: u32,
        module: Arc<dyn HostModule>,
    ) -> Result<(), RegistryError> {
        if name.is_empty() || name.len() > 255 {
            return Err(RegistryError::BadName(name.len()));
        }
        if name.contains('\0') {
            return Err(RegistryError::NulInName(name.to_owned()));
        }
        let mut inner = self.lock();
        let list = inner.modules.entry(name.to_owned()).or_default();
        if list.iter().any(|r| r.version == version) {
            let (ma, mi) = split(version);
            return Err(RegistryError::AlreadyRegistered(name.to_owned(), ma, mi));
        }
        list.push(Arc::new(Registered {
            name: name.to_owned(),
            version,
            module,
            alive: AtomicBool::new(true),
        }));
        inner.gone.remove(name);
        Ok(())
    }

    /// Removes a module. Calls already running finish; later calls through
    /// existing handles, and later binds to the name, get VMRPC_EGONE.
    pub fn unregister(&self, name: &str, version: u32) -> Result<(), RegistryError> {
        let mut inner = self.lock();
        let (ma, mi) = split(version);
        let not_registered = || RegistryError::NotRegistered(name.to_owned(), ma, mi);
        let list = inner.modules.get_mut(name).ok_or_else(not_registered)?;
        let at = list
            .iter()
            .position(|r| r.version == version)
            .ok_or_else(not_registered)?;
        list.remove(at).alive.store(false, Ordering::Release);
        if list.is_empty() {
            inner.modules.remove(name);
            inner.gone.insert(name.to_owned());
        }
        Ok(())
    }

    /// (name, version) of every registered module.
    pub fn list(&self) -> Vec<(String, u32)> {
        let inner = self.lock();
        let mut v: Vec<_> = inner
            .modules
            .values()
            .flatten()
            .map(|r| (r.name.clone(), r.version))
            .collect();
        v.sort();
        v
    }

    pub fn bind(&self, name: &[u8], version: u32) -> Result<u32, i32> {
        let name = std::str::from_utf8(name).map_err(|_| VMRPC_ENOMODULE)?;
        let mut inner = self.lock();
        let (major, minor) = split(version);
        let found = inner.modules.get(name).and_then(|list| {
            list.iter()
                .filter(|r| split(r.version).0 == major && split(r.version).1 >= minor)
                .max_by_key(|r| r.version)
                .cloned()
        });
        let reg = match found {
            Some(r) => r,
            None if inner.gone.contains(name) => return Err(VMRPC_EGONE),
            None => return Err(VMRPC_ENOMODULE),
        };
        let slot = match inner.handles.iter().position(Option::is_none) {
            Some(s) => s,
            None if inner.handles.len() < MAX_HANDLES => {
                inner.handles.push(None);
                inner.generations.push(0);
                inner.handles.len() - 1
            }
            // A resource limit, not a malformed request: the guest must unbind first.
            None => return Err(VMRPC_ELIMIT),
        };
        inner.handles[slot] = Some(reg);
        let generation = inner.generations[slot] as u32 & 0x7fff;
        Ok((generation << 16) | (slot as u32 + 1))
    }

    /// The guest's live handles, as (slot, generation, module name, version),
    /// and every slot's generation: what a VM restored from a snapshot must
    /// answer to the same handles (`vm::snapshot`).
    pub fn export_handles(&self) -> HandleTable {
        let inner = self.lock();
        let live = inner
            .handles
            .iter()
            .enumerate()
            .filter_map(|(slot, h)| h.as_ref().map(|r| (slot, r.name.clone(), r.version)))
            .collect();
        HandleTable {
            live,
            generations: inner.generations.clone(),
        }
    }

    /// Binds the handles of `table` again, each to the module registered here
    /// under the same name and version (before the guest runs).
    pub fn import_handles(&self, table: &HandleTable) -> Result<(), String> {
        let mut inner = self.lock();
        if table.generations.len() > MAX_HANDLES {
            return Err("too many handles".into());
        }
        let mut handles = vec![None; table.generations.len()];
        for (slot, name, version) in &table.live {
            let reg = inner
                .modules
                .get(name)
                .and_then(|list| list.iter().find(|r| r.version == *version))
                .cloned()
                .ok_or_else(|| format!("module {name:?} is not registered on this VM"))?;
            *handles.get_mut(*slot).ok_or("a handle outside the table")? = Some(reg);
        }
        inner.handles = handles;
        inner.generations = table.generations.clone();
        Ok(())
    }

    fn slot_of(inner: &Inner, handle: u32) -> Option<usize> {
        let slot = (handle & 0xffff).checked_sub(1)? as usize;
        let live = inner.handles.get(slot)?.is_some();
        (live && (inner.generations[slot] as u32 & 0x7fff) == handle >> 16).then_some(slot)
    }

    pub fn unbind(&self, handle: u32) -> Result<(), i32> {
        let mut inner = self.lock();
        let slot = Self::slot_of(&inner, handle).ok_or(VMRPC_EBADHANDLE)?;
        inner.handles[slot] = None;
        inner.generations[slot] = inner.generations[slot].wrapping_add(1);
        Ok(())
    }

    /// The module a handle is bound to, if it is still registered.
    pub fn lookup(&self, handle: u32) -> Result<Arc<Registered>, i32> {
        let inner = self.lock();
        let slot = Self::slot_of(&inner, handle).ok_or(VMRPC_EBADHANDLE)?;
        let reg = inner.handles[slot].clone().ok_or(VMRPC_EBADHANDLE)?;
        if reg.alive() {
            Ok(reg)
        } else {
            Err(VMRPC_EGONE)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rpc::module::Echo;
    use guest_kmod_bindings::vmrpc_version as v;

    #[test]
    fn version_rule_picks_highest_compatible_minor() {
        let r = Registry::default();
        r.register("kv", v(1, 2), Arc::new(Echo)).unwrap();
        r.register("kv", v(1, 5), Arc::new(Echo)).unwrap();
        r.register("kv", v(2, 0), Arc::new(Echo)).unwrap();
        let h = r.bind(b"kv", v(1, 3)).unwrap();
        assert_eq!(r.lookup(h).unwrap().version, v(1, 5));
        assert_eq!(r.bind(b"kv", v(1, 6)), Err(VMRPC_ENOMODULE));
        assert_eq!(r.bind(b"kv", v(3, 0)), Err(VMRPC_ENOMODULE));
        assert_eq!(r.bind(b"nope", v(1, 0)), Err(VMRPC_ENOMODULE));
        assert_eq!(r.bind(b"\xff\xfe", v(1, 0)), Err(VMRPC_ENOMODULE));
        assert!(r.register("kv", v(1, 2), Arc::new(Echo)).is_err());
    }

    #[test]
    fn unregister_makes_handles_and_binds_gone() {
        let r = Registry::default();
        r.register("m", v(1, 0), Arc::new(Echo)).unwrap();
        let h = r.bind(b"m", v(1, 0)).unwrap();
        r.unregister("m", v(1, 0)).unwrap();
        assert_eq!(r.lookup(h).err(), Some(VMRPC_EGONE));
        assert_eq!(r.bind(b"m", v(1, 0)), Err(VMRPC_EGONE));
        assert!(r.unregister("m", v(1, 0)).is_err());
        r.register("m", v(1, 0), Arc::new(Echo)).unwrap();
        assert!(r.bind(b"m", v(1, 0)).is_ok());
    }

    #[test]
    fn stale_and_forged_handles_are_rejected() {
        let r = Registry::default();
        r.register("m", v(1, 0), Arc::new(Echo)).unwrap();
        let h = r.bind(b"m", v(1, 0)).unwrap();
        assert!(h > 0 && (h as i32) > 0);
        r.unbind(h).unwrap();
        assert_eq!(r.unbind(h), Err(VMRPC_EBADHANDLE));
        let h2 = r.bind(b"m", v(1, 0)).unwrap();
        assert_ne!(h, h2, "a reused slot gets a new generation");
        assert_eq!(r.lookup(h).err(), Some(VMRPC_EBADHANDLE));
        for forged in [0, 0x7777, u32::MAX, h2 + 1, h2 ^ 0x10000] {
            assert_eq!(
                r.lookup(forged).err(),
                Some(VMRPC_EBADHANDLE),
                "{forged:#x}"
            );
        }
        assert!(r.lookup(h2).is_ok());
    }

    #[test]
    fn handle_exhaustion_is_a_limit_not_a_malformed_request() {
        let r = Registry::default();
        r.register("m", v(1, 0), Arc::new(Echo)).unwrap();
        let handles: Vec<u32> = (0..MAX_HANDLES)
            .map(|_| r.bind(b"m", v(1, 0)).unwrap())
            .collect();
        assert_eq!(r.bind(b"m", v(1, 0)), Err(VMRPC_ELIMIT));
        // Unbinding one frees exactly one slot.
        r.unbind(handles[7]).unwrap();
        assert!(r.bind(b"m", v(1, 0)).is_ok());
        assert_eq!(r.bind(b"m", v(1, 0)), Err(VMRPC_ELIMIT));
    }

    #[test]
    fn names_with_nul_are_refused() {
        let r = Registry::default();
        assert_eq!(
            r.register("a\0b", v(1, 0), Arc::new(Echo)),
            Err(RegistryError::NulInName("a\0b".into()))
        );
        assert!(r.list().is_empty());
    }
}
