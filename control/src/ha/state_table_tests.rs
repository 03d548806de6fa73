//! The exhaustive transition table: every (mode, my role, my state, partner state, communication,
//! clock skew, sync-leases, partner's unsent-update-count) is run through one handler invocation
//! and compared with the rules below, transcribed from Kea 2.2's `ha_service.cc` state handlers
//! (tag Kea-2.2.0). The rules are written as text rows so they read like Kea's handlers, not like
//! this crate's code: for each of my states, the first row whose partner states and conditions
//! match gives the next state.
//!
//! Row: `my states | partner states | conditions | next`.
//! Partner states: Kea names, `unknown` (never heard of, Kea's -1), `unavailable`, `normal` (my
//! mode's normal state), `*`. Conditions (all must hold, `-` = none): `backup` (my role),
//! `primary`, `pb`/`lb` (mode), `sync` (sync-leases), `skew` (|skew| > 60 s), `invalid` (Kea's
//! isPartnerStateInvalid), `pdt` (Kea's shouldPartnerDown), `interrupted`, `unsentchanged`
//! (partner's unsent-update-count changed and is non-zero), each negatable with `!`.
//! Next: a state name, `normal`, or `same`.

use super::state::*;
use xdhcp_config::model::{HaMode, HaRole};

const RULES: &[&str] = &[
    // backupStateHandler, inMaintenanceStateHandler, passiveBackupStateHandler,
    // terminatedStateHandler: never leave on their own.
    "backup,in-maintenance,passive-backup,terminated | * | - | same",
    // waitingStateHandler
    "waiting | * | backup | backup",
    "waiting | * | pb | passive-backup",
    "waiting | * | skew | terminated",
    "waiting | * | invalid | same",
    "waiting | communication-recovery,hot-standby,load-balancing,in-maintenance,partner-down,partner-in-maintenance,ready | sync | syncing",
    "waiting | communication-recovery,hot-standby,load-balancing,in-maintenance,partner-down,partner-in-maintenance,ready | !sync | ready",
    "waiting | waiting | primary sync | syncing",
    "waiting | waiting | primary !sync | ready",
    "waiting | unavailable | pdt | partner-down",
    "waiting | * | - | same",
    // syncingStateHandler (a sync starts in the default branch; the state changes on its result)
    "syncing | * | skew | terminated",
    "syncing | * | invalid | waiting",
    "syncing | terminated | - | terminated",
    "syncing | unavailable | pdt | partner-down",
    "syncing | * | - | same",
    // readyStateHandler
    "ready | * | skew | terminated",
    "ready | * | invalid | waiting",
    "ready | hot-standby,load-balancing,communication-recovery | - | normal",
    "ready | in-maintenance | - | partner-in-maintenance",
    "ready | partner-in-maintenance | - | in-maintenance",
    "ready | ready | primary lb | load-balancing",
    "ready | ready | primary !lb | hot-standby",
    "ready | terminated | - | terminated",
    "ready | unavailable | pdt | partner-down",
    "ready | * | - | same",
    // normalStateHandler
    "hot-standby,load-balancing | * | skew | terminated",
    "hot-standby,load-balancing | * | invalid | waiting",
    "hot-standby,load-balancing | in-maintenance | - | partner-in-maintenance",
    "hot-standby,load-balancing | partner-down | - | waiting",
    "hot-standby,load-balancing | partner-in-maintenance | - | in-maintenance",
    "hot-standby,load-balancing | terminated | - | terminated",
    "hot-standby,load-balancing | unavailable | pdt | partner-down",
    "hot-standby,load-balancing | unavailable | commrecovery | communication-recovery",
    "hot-standby,load-balancing | * | - | same",
    // partnerDownStateHandler
    "partner-down | * | skew | terminated",
    "partner-down | * | invalid | waiting",
    "partner-down | communication-recovery,partner-down,partner-in-maintenance | - | waiting",
    "partner-down | ready | unsentchanged | waiting",
    "partner-down | ready | - | normal",
    "partner-down | terminated | - | terminated",
    "partner-down | * | - | same",
    // partnerInMaintenanceStateHandler (no partner-state validity check in Kea 2.2)
    "partner-in-maintenance | * | skew | terminated",
    "partner-in-maintenance | unavailable | - | partner-down",
    "partner-in-maintenance | * | - | same",
    // communicationRecoveryHandler (backlog never overflown here; the replay is asynchronous, so
    // a successful contact first stays and asks for the replay)
    "communication-recovery | * | skew | terminated",
    "communication-recovery | * | invalid | waiting",
    "communication-recovery | in-maintenance | - | partner-in-maintenance",
    "communication-recovery | partner-down | - | waiting",
    "communication-recovery | partner-in-maintenance | - | in-maintenance",
    "communication-recovery | terminated | - | terminated",
    "communication-recovery | unavailable | pdt | partner-down",
    "communication-recovery | unavailable | - | same",
    "communication-recovery | waiting,syncing,ready | - | same",
    "communication-recovery | * | interrupted | same",
    "communication-recovery | normal,communication-recovery | - | same",
    "communication-recovery | * | - | waiting",
];

#[derive(Clone, Copy)]
struct Case {
    mode: HaMode,
    role: HaRole,
    state: State,
    partner: PartnerState,
    interrupted: bool,
    many_unacked: bool,
    skew: bool,
    sync: bool,
    unsent_changed: bool,
}

/// Kea 2.2 `adjustNetworkState`: the states in which the DHCP service is enabled (written here
/// again, from Kea, rather than taken from the code under test).
fn kea_service_enabled(s: State) -> bool {
    [
        "communication-recovery",
        "load-balancing",
        "hot-standby",
        "partner-down",
        "partner-in-maintenance",
        "passive-backup",
        "terminated",
    ]
    .contains(&s.name())
}

fn normal_of(c: &Case) -> &'static str {
    if c.role == HaRole::Backup {
        return "backup";
    }
    match c.mode {
        HaMode::LoadBalancing => "load-balancing",
        HaMode::HotStandby => "hot-standby",
        HaMode::PassiveBackup => "passive-backup",
    }
}

fn holds(cond: &str, c: &Case) -> bool {
    if let Some(rest) = cond.strip_prefix('!') {
        return !holds(rest, c);
    }
    let pname = c.partner.name();
    match cond {
        "-" => true,
        "backup" => c.role == HaRole::Backup,
        "primary" => c.role == HaRole::Primary,
        "pb" => c.mode == HaMode::PassiveBackup,
        "lb" => c.mode == HaMode::LoadBalancing,
        "sync" => c.sync,
        "skew" => c.skew,
        "interrupted" => c.interrupted,
        "unsentchanged" => c.unsent_changed,
        // delayed-updates-limit is 100 in load-balancing and 0 otherwise (Kea's defaults).
        "commrecovery" => c.mode == HaMode::LoadBalancing,
        "invalid" => {
            (pname == "communication-recovery" && c.mode != HaMode::LoadBalancing)
                || (pname == "hot-standby" && c.mode != HaMode::HotStandby)
                || (pname == "load-balancing" && c.mode != HaMode::LoadBalancing)
        }
        "pdt" => {
            // Kea 2.2 shouldPartnerDown: interrupted, and then if the service is enabled and
            // (load-balancing or standby) the unacked-clients test, otherwise true. max-unacked-
            // clients is 10 in these cases; "many" is 11 unacked clients.
            c.interrupted
                && (!(kea_service_enabled(c.state)
                    && (c.mode == HaMode::LoadBalancing || c.role == HaRole::Standby))
                    || c.many_unacked)
        }
        other => panic!("unknown condition {other}"),
    }
}

fn expected(c: &Case) -> State {
    let me = c.state.name();
    let partner = match c.partner {
        PartnerState::Unknown => "unknown",
        p => p.name(),
    };
    for row in RULES {
        let cols: Vec<&str> = row.split('|').map(str::trim).collect();
        assert_eq!(cols.len(), 4, "bad row {row}");
        if !cols[0].split(',').any(|s| s == me) {
            continue;
        }
        let pmatch = cols[1]
            .split(',')
            .any(|s| s == "*" || s == partner || (s == "normal" && partner == normal_of(c)));
        if !pmatch {
            continue;
        }
        if !cols[2].split_whitespace().all(|k| holds(k, c)) {
            continue;
        }
        return match cols[3] {
            "same" => c.state,
            "normal" => State::from_name(normal_of(c)).unwrap(),
            s => State::from_name(s).unwrap_or_else(|| panic!("bad state in row {row}")),
        };
    }
    panic!("no rule for state {me}");
}

fn params(mode: HaMode, role: HaRole, sync: bool) -> HaParams {
    let peers = match mode {
        HaMode::HotStandby => vec![
            PeerInfo {
                name: "server1".into(),
                role: HaRole::Primary,
            },
            PeerInfo {
                name: "server2".into(),
                role: HaRole::Standby,
            },
            PeerInfo {
                name: "server3".into(),
                role: HaRole::Backup,
            },
        ],
        HaMode::LoadBalancing => vec![
            PeerInfo {
                name: "server1".into(),
                role: HaRole::Primary,
            },
            PeerInfo {
                name: "server2".into(),
                role: HaRole::Secondary,
            },
            PeerInfo {
                name: "server3".into(),
                role: HaRole::Backup,
            },
        ],
        HaMode::PassiveBackup => vec![
            PeerInfo {
                name: "server1".into(),
                role: HaRole::Primary,
            },
            PeerInfo {
                name: "server3".into(),
                role: HaRole::Backup,
            },
        ],
    };
    let this = match role {
        HaRole::Primary => "server1",
        HaRole::Secondary | HaRole::Standby => "server2",
        HaRole::Backup => "server3",
    };
    HaParams {
        this_name: this.into(),
        mode,
        peers,
        heartbeat_delay_ms: 10_000,
        max_response_delay_ms: 60_000,
        max_ack_delay_ms: 10_000,
        max_unacked_clients: 10,
        delayed_updates_limit: if mode == HaMode::LoadBalancing {
            100
        } else {
            0
        },
        sync_leases: sync,
        send_lease_updates: true,
        sync_timeout_ms: 60_000,
        auto_failover: true,
        pausing: Vec::new(),
        partner_free_delay_ms: 0,
    }
}

fn partners() -> Vec<PartnerState> {
    let mut v = vec![PartnerState::Unknown, PartnerState::Unavailable];
    v.extend(State::ALL.iter().map(|s| PartnerState::Is(*s)));
    v
}

#[test]
fn exhaustive_transition_table_matches_kea_2_2() {
    let configs = [
        (HaMode::HotStandby, HaRole::Primary),
        (HaMode::HotStandby, HaRole::Standby),
        (HaMode::HotStandby, HaRole::Backup),
        (HaMode::LoadBalancing, HaRole::Primary),
        (HaMode::LoadBalancing, HaRole::Secondary),
        (HaMode::LoadBalancing, HaRole::Backup),
        (HaMode::PassiveBackup, HaRole::Primary),
        (HaMode::PassiveBackup, HaRole::Backup),
    ];
    let now = Now {
        mono_ms: 1_000_000,
        wall_secs: 1_700_000_000,
    };
    let mut checked = 0usize;
    let mut failures = Vec::new();
    for &(mode, role) in &configs {
        for sync in [true, false] {
            for &state in State::ALL.iter() {
                for partner in partners() {
                    for (interrupted, many_unacked) in [(false, false), (true, false), (true, true)]
                    {
                        for skew in [false, true] {
                            for unsent_changed in [false, true] {
                                let c = Case {
                                    mode,
                                    role,
                                    state,
                                    partner,
                                    interrupted,
                                    many_unacked,
                                    skew,
                                    sync,
                                    unsent_changed,
                                };
                                let mut m = HaMachine::new(params(mode, role, sync), now);
                                let poke = if interrupted {
                                    now.mono_ms - 60_001
                                } else {
                                    now.mono_ms - 5
                                };
                                m.force(now, state, partner, poke);
                                m.force_unacked(if many_unacked { 11 } else { 0 });
                                m.force_clock_skew(if skew { 90 } else { 0 });
                                if unsent_changed {
                                    m.force_partner_unsent(3, 7);
                                } else {
                                    m.force_partner_unsent(7, 7);
                                }
                                m.step(now);
                                let want = expected(&c);
                                checked += 1;
                                if m.state() != want {
                                    failures.push(format!(
                                        "{:?}/{:?} sync={} me={} partner={} interrupted={} many_unacked={} skew={} unsent_changed={}: got {} want {}",
                                        mode, role, sync, state, partner.name(), interrupted, many_unacked, skew, unsent_changed, m.state(), want
                                    ));
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    assert!(checked > 20_000);
    assert!(
        failures.is_empty(),
        "{} of {checked} cases differ from Kea 2.2:\n{}",
        failures.len(),
        failures[..failures.len().min(40)].join("\n")
    );
}

#[test]
fn syncing_asks_for_a_sync_once_and_goes_ready_on_success() {
    let now = Now {
        mono_ms: 10_000,
        wall_secs: 1_700_000_000,
    };
    let mut m = HaMachine::new(params(HaMode::HotStandby, HaRole::Standby, true), now);
    m.force(
        now,
        State::Syncing,
        PartnerState::Is(State::PartnerDown),
        now.mono_ms,
    );
    m.step(now);
    let syncs: Vec<_> = std::iter::from_fn(|| m.poll_action())
        .filter(|a| matches!(a, Action::Sync { .. }))
        .collect();
    assert_eq!(
        syncs,
        vec![Action::Sync {
            peer: "server1".into(),
            max_period_secs: 60
        }]
    );
    m.step(now);
    assert!(
        std::iter::from_fn(|| m.poll_action()).all(|a| !matches!(a, Action::Sync { .. })),
        "a second sync while one runs"
    );
    m.handle_sync_result(now, true);
    // ready → partner in partner-down stays ready (partner must go to waiting first).
    assert_eq!(m.state(), State::Ready);
}

#[test]
fn communication_recovery_replays_then_returns_to_load_balancing() {
    let now = Now {
        mono_ms: 100_000,
        wall_secs: 1_700_000_000,
    };
    let mut m = HaMachine::new(params(HaMode::LoadBalancing, HaRole::Primary, true), now);
    m.force(
        now,
        State::CommunicationRecovery,
        PartnerState::Is(State::LoadBalancing),
        now.mono_ms,
    );
    m.step(now);
    assert!(std::iter::from_fn(|| m.poll_action()).any(|a| a == Action::ReplayBacklog));
    m.handle_backlog_result(now, true);
    assert_eq!(m.state(), State::LoadBalancing);

    // Overflown backlog: ha-reset to the partner, then waiting.
    m.force(
        now,
        State::CommunicationRecovery,
        PartnerState::Is(State::LoadBalancing),
        now.mono_ms,
    );
    m.note_backlog(101);
    m.step(now);
    assert!(std::iter::from_fn(|| m.poll_action()).any(|a| a == Action::SendHaReset));
    m.handle_ha_reset_result(now, true);
    // waiting, and at once syncing since the partner is in load-balancing.
    assert_eq!(m.state(), State::Syncing);
    assert!(std::iter::from_fn(|| m.poll_action()).any(|a| a
        == Action::StateChanged {
            from: State::CommunicationRecovery,
            to: State::Waiting
        }));
}

#[test]
fn secs_byte_swap_rule() {
    // 0x0500 (1280 s as sent little-endian by some clients) is read as 5 s.
    assert!(!v4_secs_unacked(0x0500, 10_000));
    assert!(v4_secs_unacked(0x0b00, 10_000)); // 11 s
    assert!(v4_secs_unacked(11, 10_000));
    assert!(!v4_secs_unacked(10, 10_000));
    assert!(v4_secs_unacked(0x0501, 10_000)); // low byte non-zero: no swap, 1281 s
    assert!(v6_elapsed_unacked(1001, 10_000));
    assert!(!v6_elapsed_unacked(1000, 10_000));
}

#[test]
fn maintenance_round_trip() {
    let now = Now {
        mono_ms: 100_000,
        wall_secs: 1_700_000_000,
    };
    let mut a = HaMachine::new(params(HaMode::HotStandby, HaRole::Primary, true), now);
    let mut b = HaMachine::new(params(HaMode::HotStandby, HaRole::Standby, true), now);
    a.force(
        now,
        State::HotStandby,
        PartnerState::Is(State::HotStandby),
        now.mono_ms,
    );
    b.force(
        now,
        State::HotStandby,
        PartnerState::Is(State::HotStandby),
        now.mono_ms,
    );
    assert!(a.maintenance_start_check().is_ok());
    let ans = b.cmd_maintenance_notify(now, false);
    assert_eq!(ans.result, 0);
    assert_eq!(b.state(), State::InMaintenance);
    let ans = a.maintenance_start_result(
        now,
        Outcome::Answered {
            result: ans.result,
            text: ans.text,
        },
    );
    assert_eq!(ans.result, 0);
    assert_eq!(a.state(), State::PartnerInMaintenance);
    assert_eq!(a.served_scopes(), vec!["server1".to_string()]);
    // Second notify is refused with 1001 from partner-in-maintenance.
    assert_eq!(
        a.cmd_maintenance_notify(now, false).result,
        RESULT_MAINTENANCE_NOT_ALLOWED
    );
    assert!(a.maintenance_cancel_check().is_ok());
    let ans = b.cmd_maintenance_notify(now, true);
    assert_eq!(ans.result, 0);
    assert_eq!(b.state(), State::HotStandby);
    let ans = a.maintenance_cancel_result(
        now,
        Outcome::Answered {
            result: 0,
            text: ans.text,
        },
    );
    assert_eq!(ans.result, 0);
    assert_eq!(a.state(), State::HotStandby);
}

#[test]
fn maintenance_start_with_partner_offline_goes_partner_down_serving_all() {
    let now = Now {
        mono_ms: 100_000,
        wall_secs: 1_700_000_000,
    };
    let mut p = params(HaMode::LoadBalancing, HaRole::Primary, true);
    p.auto_failover = false;
    let mut a = HaMachine::new(p, now);
    a.force(
        now,
        State::LoadBalancing,
        PartnerState::Is(State::LoadBalancing),
        now.mono_ms,
    );
    let ans = a.maintenance_start_result(now, Outcome::CommError("refused".into()));
    assert_eq!(ans.result, 0);
    assert_eq!(a.state(), State::PartnerDown);
    // Maintenance is not a failover: all scopes even with auto-failover false.
    assert_eq!(
        a.served_scopes(),
        vec!["server1".to_string(), "server2".to_string()]
    );
}

#[test]
fn partner_down_without_auto_failover_serves_own_scope_only() {
    let now = Now {
        mono_ms: 100_000,
        wall_secs: 1_700_000_000,
    };
    let mut p = params(HaMode::LoadBalancing, HaRole::Secondary, true);
    p.auto_failover = false;
    let mut a = HaMachine::new(p, now);
    a.force(now, State::PartnerDown, PartnerState::Unavailable, 0);
    assert_eq!(a.served_scopes(), vec!["server2".to_string()]);
}

#[test]
fn heartbeats_are_paced_and_failover_happens_after_max_response_delay() {
    let mut now = Now {
        mono_ms: 0,
        wall_secs: 1_700_000_000,
    };
    let mut p = params(HaMode::HotStandby, HaRole::Standby, true);
    p.heartbeat_delay_ms = 1000;
    p.max_response_delay_ms = 3000;
    let mut m = HaMachine::new(p, now);
    assert_eq!(m.state(), State::Waiting);
    assert!(!m.dhcp_enabled());
    let mut hb_times = Vec::new();
    let mut partner_down_at = None;
    while now.mono_ms < 10_000 {
        let next = m.poll_timeout().expect("always a timer");
        assert!(next >= now.mono_ms);
        now.mono_ms = next;
        m.handle_timeout(now);
        while let Some(a) = m.poll_action() {
            if a == Action::SendHeartbeat {
                hb_times.push(now.mono_ms);
                m.handle_heartbeat_response(now, Err("connection refused".into()));
            }
        }
        if m.state() == State::PartnerDown && partner_down_at.is_none() {
            partner_down_at = Some(now.mono_ms);
        }
    }
    assert_eq!(&hb_times[..3], &[1000, 2000, 3000]);
    // Standby with DHCP disabled in waiting: the unacked test does not apply → at 3001 ms.
    assert_eq!(partner_down_at, Some(3001));
    assert!(m.dhcp_enabled());
    assert_eq!(m.served_scopes(), vec!["server1".to_string()]);
}

#[test]
fn pausing_once_and_continue() {
    let now = Now {
        mono_ms: 0,
        wall_secs: 1_700_000_000,
    };
    let mut p = params(HaMode::HotStandby, HaRole::Primary, true);
    p.pausing = vec![(State::Ready, Pausing::Once)];
    let mut m = HaMachine::new(p, now);
    m.force(
        now,
        State::Syncing,
        PartnerState::Is(State::Waiting),
        now.mono_ms,
    );
    m.step(now);
    m.handle_sync_result(now, true);
    assert_eq!(m.state(), State::Ready);
    assert!(m.is_paused());
    m.handle_heartbeat_response(
        now,
        Ok(HeartbeatInfo {
            state: State::HotStandby,
            partner_time_secs: now.wall_secs,
            scopes: vec![],
            unsent_update_count: Some(0),
        }),
    );
    assert_eq!(m.state(), State::Ready, "paused machine must not move");
    assert_eq!(m.cmd_continue(now).text, "HA state machine continues.");
    assert_eq!(m.state(), State::HotStandby);
    assert_eq!(m.cmd_continue(now).text, "HA state machine is not paused.");
}

#[test]
fn clock_skew_terminates_and_terminated_stays() {
    let now = Now {
        mono_ms: 0,
        wall_secs: 1_700_000_000,
    };
    let mut m = HaMachine::new(params(HaMode::HotStandby, HaRole::Primary, true), now);
    m.force(
        now,
        State::HotStandby,
        PartnerState::Is(State::HotStandby),
        0,
    );
    m.handle_heartbeat_response(
        now,
        Ok(HeartbeatInfo {
            state: State::HotStandby,
            partner_time_secs: now.wall_secs + 45,
            scopes: vec![],
            unsent_update_count: None,
        }),
    );
    assert_eq!(m.state(), State::HotStandby);
    assert!(std::iter::from_fn(|| m.poll_action())
        .any(|a| matches!(a, Action::ClockSkewWarning { skew_secs: 45 })));
    m.handle_heartbeat_response(
        now,
        Ok(HeartbeatInfo {
            state: State::HotStandby,
            partner_time_secs: now.wall_secs - 61,
            scopes: vec![],
            unsent_update_count: None,
        }),
    );
    assert_eq!(m.state(), State::Terminated);
    assert!(
        m.dhcp_enabled(),
        "terminated keeps serving its default scopes"
    );
    assert_eq!(m.served_scopes(), vec!["server1".to_string()]);
    assert_eq!(m.poll_timeout(), None, "terminated sends no heartbeats");
}

#[test]
fn ha_scopes_validates_names() {
    let now = Now {
        mono_ms: 0,
        wall_secs: 1_700_000_000,
    };
    let mut m = HaMachine::new(params(HaMode::LoadBalancing, HaRole::Primary, true), now);
    assert_eq!(
        m.cmd_scopes(now, &["server1".into(), "server2".into()])
            .result,
        0
    );
    assert_eq!(m.served_scopes().len(), 2);
    let a = m.cmd_scopes(now, &["nope".into()]);
    assert_eq!(a.result, 1);
    assert_eq!(
        m.served_scopes().len(),
        2,
        "a rejected ha-scopes keeps the old scopes"
    );
}

#[test]
fn safety_period_gates_partner_free_addresses() {
    let now = Now {
        mono_ms: 0,
        wall_secs: 1_700_000_000,
    };
    let mut p = params(HaMode::HotStandby, HaRole::Standby, true);
    p.partner_free_delay_ms = 3_600_000;
    let mut m = HaMachine::new(p, now);
    m.force(now, State::PartnerDown, PartnerState::Unavailable, 0);
    assert!(!m.partner_free_allowed());
    let later = Now {
        mono_ms: 3_600_000,
        wall_secs: now.wall_secs + 3600,
    };
    m.handle_timeout(later);
    assert!(m.partner_free_allowed());
    assert!(std::iter::from_fn(|| m.poll_action()).any(|a| a == Action::AllocPartnerFree(true)));
}
