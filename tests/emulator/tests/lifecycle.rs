//! Delete, the "being deleted" window, soft-delete, purge, purge protection and recover.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::*;

use byokd_emulator::{RecoveryLevel, VaultOptions};
use serde_json::json;

#[tokio::test]
async fn delete_window_then_visible_then_purge() {
    let (emu, c) = start().await;
    let t = c.token().await;
    c.create_kek(&t, VAULT, "gone").await;
    c.create_kek(&t, VAULT, "gone").await;

    let r = c
        .kv(
            "DELETE",
            VAULT,
            "/keys/gone?api-version=7.5",
            Some(&t),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        r.body["recoveryId"],
        format!("https://{VAULT}.vault.azure.net/deletedkeys/gone")
    );
    let deleted = r.body["deletedDate"].as_i64().unwrap();
    assert_eq!(
        r.body["scheduledPurgeDate"].as_i64().unwrap(),
        deleted + 90 * 86400
    );
    assert!(emu.all_keys(VAULT).is_empty(), "all versions are deleted");

    // Inside the window: GET 404, purge 409 ObjectIsBeingDeleted, create 409.
    let r = c
        .kv(
            "GET",
            VAULT,
            "/deletedkeys/gone?api-version=7.5",
            Some(&t),
            None,
        )
        .await;
    assert_eq!((r.status, r.code()), (404, Some("KeyNotFound")));
    let r = c
        .kv(
            "DELETE",
            VAULT,
            "/deletedkeys/gone?api-version=7.5",
            Some(&t),
            None,
        )
        .await;
    assert_eq!(
        (r.status, r.code(), r.inner()),
        (409, Some("Conflict"), Some("ObjectIsBeingDeleted"))
    );
    let r = c
        .kv(
            "POST",
            VAULT,
            "/deletedkeys/gone/recover?api-version=7.5",
            Some(&t),
            None,
        )
        .await;
    assert_eq!((r.status, r.inner()), (409, Some("ObjectIsBeingDeleted")));

    sleep_ms(250).await;
    let r = c
        .kv(
            "GET",
            VAULT,
            "/deletedkeys/gone?api-version=7.5",
            Some(&t),
            None,
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["key"]["key_ops"], json!(["import"]));
    let r = c
        .kv(
            "POST",
            VAULT,
            "/keys/gone/create?api-version=7.5",
            Some(&t),
            Some(json!({"kty":"RSA-HSM","key_ops":["import"]})),
        )
        .await;
    assert_eq!(
        (r.status, r.code(), r.inner()),
        (409, Some("Conflict"), Some("ObjectIsDeletedButRecoverable"))
    );

    let r = c
        .kv(
            "DELETE",
            VAULT,
            "/deletedkeys/gone?api-version=7.5",
            Some(&t),
            None,
        )
        .await;
    assert_eq!(r.status, 204);
    assert!(r.raw.is_empty());
    let r = c
        .kv(
            "DELETE",
            VAULT,
            "/deletedkeys/gone?api-version=7.5",
            Some(&t),
            None,
        )
        .await;
    assert_eq!((r.status, r.code()), (404, Some("KeyNotFound")));
    let r = c
        .kv(
            "DELETE",
            VAULT,
            "/keys/never-existed?api-version=7.5",
            Some(&t),
            None,
        )
        .await;
    assert_eq!((r.status, r.code()), (404, Some("KeyNotFound")));
    c.create_kek(&t, VAULT, "gone").await;
}

#[tokio::test]
async fn recover_restores_all_versions() {
    let (emu, c) = start().await;
    let t = c.token().await;
    c.create_kek(&t, VAULT, "back").await;
    c.create_kek(&t, VAULT, "back").await;
    c.kv(
        "DELETE",
        VAULT,
        "/keys/back?api-version=7.5",
        Some(&t),
        None,
    )
    .await;
    sleep_ms(250).await;
    let r = c
        .kv(
            "POST",
            VAULT,
            "/deletedkeys/back/recover?api-version=7.5",
            Some(&t),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert!(
        r.body["key"]["kid"]
            .as_str()
            .unwrap()
            .contains("/keys/back/")
    );
    assert_eq!(emu.key_versions(VAULT, "back").len(), 2);
    assert!(emu.deleted_keys(VAULT).is_empty());
}

#[tokio::test]
async fn purge_protection_gives_403() {
    let (emu, c) = start().await;
    emu.add_vault(
        "protected",
        VaultOptions {
            recovery_level: RecoveryLevel::Recoverable,
            ..VaultOptions::default()
        },
    )
    .unwrap();
    let t = c.token().await;
    let r = c.create_kek(&t, "protected", "k").await;
    assert_eq!(r.body["attributes"]["recoveryLevel"], "Recoverable");
    c.kv(
        "DELETE",
        "protected",
        "/keys/k?api-version=7.5",
        Some(&t),
        None,
    )
    .await;
    sleep_ms(250).await;
    let r = c
        .kv(
            "DELETE",
            "protected",
            "/deletedkeys/k?api-version=7.5",
            Some(&t),
            None,
        )
        .await;
    assert_eq!((r.status, r.code()), (403, Some("Forbidden")));
    assert_eq!(emu.deleted_keys("protected").len(), 1);
}

#[tokio::test]
async fn purgeable_vault_delete_is_final() {
    let (emu, c) = start().await;
    emu.add_vault(
        "nosoft",
        VaultOptions {
            recovery_level: RecoveryLevel::Purgeable,
            ..VaultOptions::default()
        },
    )
    .unwrap();
    let t = c.token().await;
    let r = c.create_kek(&t, "nosoft", "k").await;
    assert_eq!(r.body["attributes"]["recoveryLevel"], "Purgeable");
    assert_eq!(r.body["attributes"]["recoverableDays"], 0);
    let r = c
        .kv(
            "DELETE",
            "nosoft",
            "/keys/k?api-version=7.5",
            Some(&t),
            None,
        )
        .await;
    assert_eq!(r.status, 200);
    assert!(emu.deleted_keys("nosoft").is_empty());
    c.create_kek(&t, "nosoft", "k").await;
}

#[tokio::test]
async fn behind_the_back_mutations_are_visible_to_clients() {
    let (emu, c) = start().await;
    let t = c.token().await;
    c.create_kek(&t, VAULT, "drift").await;
    let foreign = emu
        .import_foreign_version(
            VAULT,
            "drift",
            byokd_emulator::ForeignKeyType::Ec {
                crv: byokd_emulator::Curve::P384,
            },
            Default::default(),
        )
        .await
        .unwrap();
    let r = c
        .kv("GET", VAULT, "/keys/drift/?api-version=7.5", Some(&t), None)
        .await;
    assert_eq!(r.body["key"]["kid"], foreign.kid.as_str());
    assert_eq!(r.body["key"]["crv"], "P-384");
    emu.delete_key_now(VAULT, "drift").unwrap();
    let r = c
        .kv(
            "GET",
            VAULT,
            "/deletedkeys/drift?api-version=7.5",
            Some(&t),
            None,
        )
        .await;
    assert_eq!(r.status, 200);
}
