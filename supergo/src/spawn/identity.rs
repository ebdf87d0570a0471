//! Who the child runs as, and with which resource limits: the user and groups looked up by
//! name, and the `rlimits` plan, both resolved before the clone (the child cannot call NSS).
//!
//! The look-ups use the reentrant `getpwnam_r`/`getgrnam_r`/`getgrouplist` and hold no lock
//! of supergo's, so a slow directory service delays only the program being spawned.

use nix::libc;
use nix::sys::resource::Resource;
use nix::unistd::{self, Gid, Group, Uid, User};

use super::error::{cstring, fail, SpawnError};
use crate::config::ProgramConfig;

/// The identity the child takes (supergo running as root).
pub(super) struct Identity {
    pub(super) uid: Uid,
    pub(super) gid: Gid,
    /// Raw ids: the child passes them to the kernel as they are.
    pub(super) groups: Vec<libc::gid_t>,
    /// False when supergo already runs as that user (not root): no switch to make.
    pub(super) switch: bool,
}

pub(super) fn lookup_identity(
    config: &ProgramConfig,
) -> Result<Option<(Identity, User)>, SpawnError> {
    let name = &config.name;
    let Some(user_name) = &config.user else {
        if let Some(group_name) = &config.group {
            let group = lookup_group(name, group_name)?;
            let me = User::from_uid(Uid::effective()).ok().flatten();
            if !Uid::effective().is_root() {
                return Err(fail(format!(
                    "{name}: group `{group_name}` requested, but supergo does not run as root and cannot change groups"
                )));
            }
            if let Some(me) = me {
                return Ok(Some((
                    Identity {
                        uid: me.uid,
                        gid: group.gid,
                        groups: vec![group.gid.as_raw()],
                        switch: true,
                    },
                    me,
                )));
            }
        }
        return Ok(None);
    };
    let user = User::from_name(user_name)
        .map_err(|e| {
            fail(format!(
                "{name}: cannot look up user `{user_name}`: {}",
                e.desc()
            ))
        })?
        .ok_or_else(|| fail(format!("{name}: unknown user `{user_name}`")))?;
    if !Uid::effective().is_root() && Uid::effective() != user.uid {
        return Err(fail(format!(
            "{name}: user `{user_name}` requested, but supergo runs as uid {} and only root can switch users",
            Uid::effective()
        )));
    }
    let gid = match &config.group {
        Some(group_name) => lookup_group(name, group_name)?.gid,
        None => user.gid,
    };
    if !Uid::effective().is_root() {
        // Already that user: nothing to switch (setgroups would fail without root), but
        // HOME/USER/LOGNAME are still set from it.
        if gid != Gid::effective() {
            return Err(fail(format!(
                "{name}: group {gid} requested, but supergo runs as gid {} and only root can switch groups",
                Gid::effective()
            )));
        }
        return Ok(Some((
            Identity {
                uid: user.uid,
                gid,
                groups: Vec::new(),
                switch: false,
            },
            user,
        )));
    }
    let c_name = cstring(user_name.as_bytes(), name, "the user name")?;
    let mut groups = unistd::getgrouplist(&c_name, gid).map_err(|e| {
        fail(format!(
            "{name}: cannot list the groups of `{user_name}`: {}",
            e.desc()
        ))
    })?;
    if !groups.contains(&gid) {
        groups.push(gid);
    }
    let groups = groups.iter().map(|g| g.as_raw()).collect();
    Ok(Some((
        Identity {
            uid: user.uid,
            gid,
            groups,
            switch: true,
        },
        user,
    )))
}

fn lookup_group(program: &str, group_name: &str) -> Result<Group, SpawnError> {
    Group::from_name(group_name)
        .map_err(|e| {
            fail(format!(
                "{program}: cannot look up group `{group_name}`: {}",
                e.desc()
            ))
        })?
        .ok_or_else(|| fail(format!("{program}: unknown group `{group_name}`")))
}

pub(super) fn rlimit_plan(config: &ProgramConfig) -> Result<Vec<(Resource, u64)>, SpawnError> {
    config
        .rlimits
        .iter()
        .map(|(key, value)| {
            let resource = match key.as_str() {
                "as" => Resource::RLIMIT_AS,
                "core" => Resource::RLIMIT_CORE,
                "cpu" => Resource::RLIMIT_CPU,
                "data" => Resource::RLIMIT_DATA,
                "fsize" => Resource::RLIMIT_FSIZE,
                "memlock" => Resource::RLIMIT_MEMLOCK,
                "nofile" => Resource::RLIMIT_NOFILE,
                "nproc" => Resource::RLIMIT_NPROC,
                "rss" => Resource::RLIMIT_RSS,
                "stack" => Resource::RLIMIT_STACK,
                "msgqueue" => Resource::RLIMIT_MSGQUEUE,
                "nice" => Resource::RLIMIT_NICE,
                "rtprio" => Resource::RLIMIT_RTPRIO,
                "sigpending" => Resource::RLIMIT_SIGPENDING,
                "locks" => Resource::RLIMIT_LOCKS,
                other => return Err(fail(format!("{}: unknown rlimit `{other}`", config.name))),
            };
            let value = if *value == u64::MAX {
                libc::RLIM_INFINITY
            } else {
                *value
            };
            Ok((resource, value))
        })
        .collect()
}
