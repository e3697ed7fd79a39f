//! Kept object handles on real tokens (SoftHSM and kryoptic): byokd keeps the handle of each
//! key's objects between requests instead of searching the token every time, and must never let
//! a kept handle stand for another object. A key destroyed through byokd is not found again; a
//! key destroyed behind byokd's back (another session of the process, as an operator's tool or a
//! vendor restore would) is not found through its old handle, even after the token has made new
//! objects; a key restored with the same CKA_ID is found with its new handle; and many requests
//! at once, with destroys among them, each get their own key or `KeyNotFound`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use byokd::hsm::{Hsm, HsmConfig, HsmError, PublicKeyInfo};
use byokd::model::{Curve, GroupName, HsmKeyId, KeyName, KeyType};
use byokd::secret::Pin;
use common::wrapcheck::{kek, strict_pkcs8_public_spki, unwrap_transfer};
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::Attribute;
use cryptoki::session::Session;
use std::path::Path;

const EC: KeyType = KeyType::Ec(Curve::P256);

fn names(group: &str, key: &str) -> (GroupName, KeyName) {
    (
        GroupName::try_from(group).unwrap(),
        KeyName::try_from(key).unwrap(),
    )
}

/// A second session on the token in this process, as another user of the module would have:
/// it shares byokd's library state and login, so what it destroys is gone for byokd too.
fn raw_session(module: &Path, label: &str) -> (Pkcs11, Session) {
    let pkcs11 = Pkcs11::new(module).unwrap();
    // byokd's `Hsm` initialised the module already; share it.
    let _ = pkcs11.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK));
    let slot = pkcs11
        .get_slots_with_initialized_token()
        .unwrap()
        .into_iter()
        .find(|s| pkcs11.get_token_info(*s).unwrap().label().trim() == label)
        .unwrap();
    let session = pkcs11.open_rw_session(slot).unwrap();
    (pkcs11, session)
}

/// Destroys both objects of key `id` through `session`.
fn destroy_behind_byokds_back(session: &Session, id: HsmKeyId) {
    let objects = session
        .find_objects(&[Attribute::Id(id.0.to_vec())])
        .unwrap();
    assert_eq!(objects.len(), 2, "the key's private and public objects");
    for object in objects {
        session.destroy_object(object).unwrap();
    }
}

/// An EC P-256 key pair made on the token through `session`, with CKA_ID `id`.
fn make_key_pair(session: &Session, id: [u8; 16], label: &str) {
    let common = [
        Attribute::Token(true),
        Attribute::Id(id.to_vec()),
        Attribute::Label(label.as_bytes().to_vec()),
    ];
    // What a wrap needs: an extractable, sensitive private key and the curve on the public one.
    let public = [
        &common[..],
        &[Attribute::EcParams(Curve::P256.params_der().to_vec())],
    ]
    .concat();
    let private = [
        &common[..],
        &[Attribute::Sensitive(true), Attribute::Extractable(true)],
    ]
    .concat();
    session
        .generate_key_pair(&Mechanism::EccKeyPairGen, &public, &private)
        .unwrap();
}

/// Wraps key `id` and returns the public key of what the wrap holds (SPKI DER).
async fn wrapped_public(hsm: &Hsm, id: HsmKeyId) -> Result<Vec<u8>, HsmError> {
    let (kek_private, kek_public) = kek(2048);
    let blob = hsm.wrap_for_transfer(id, &kek_public).await?;
    Ok(strict_pkcs8_public_spki(
        &unwrap_transfer(&kek_private, &blob),
        EC,
    ))
}

fn assert_not_found<T: std::fmt::Debug>(result: Result<T, HsmError>, what: &str) {
    assert!(
        matches!(result, Err(HsmError::KeyNotFound { .. })),
        "{what}: {result:?}"
    );
}

async fn kept_handles_never_stand_for_another_object(mut cfg: HsmConfig, pin: Pin) {
    // `host` serves EC keys on both tokens (kryoptic's own EC encoding is refused by the
    // conformance self-test): the lookups are what is tested here, not the strategy.
    cfg.allow_host_wrap = true;
    cfg.sessions = 3;
    let (module, label) = (cfg.module.clone(), cfg.token_label.clone());
    let (hsm, _) = Hsm::start(&cfg, pin).unwrap();

    // Destroyed through byokd: its handles go with it.
    let (group, key) = names("h", "a");
    let a = hsm.generate(EC, &group, &key).await.unwrap();
    assert_eq!(hsm.public_key(a.id).await.unwrap(), a.public);
    assert_eq!(wrapped_public(&hsm, a.id).await.unwrap(), a.public.spki_der);
    hsm.destroy(a.id).await.unwrap();
    let (group, key) = names("h", "b");
    let b = hsm.generate(EC, &group, &key).await.unwrap();
    assert_not_found(hsm.public_key(a.id).await, "public key of a destroyed key");
    assert_not_found(wrapped_public(&hsm, a.id).await, "wrap of a destroyed key");
    assert_not_found(
        hsm.key_attributes(a.id).await,
        "attributes of a destroyed key",
    );
    assert_not_found(hsm.destroy(a.id).await, "destroying it again");
    assert_eq!(hsm.public_key(b.id).await.unwrap(), b.public);

    // Destroyed behind byokd's back after its handles were used, then new objects made: the
    // old handles are refused (or, on a token that reuses handles, name another object) and
    // byokd searches again instead of using them.
    let (group, key) = names("h", "c");
    let c = hsm.generate(EC, &group, &key).await.unwrap();
    assert_eq!(hsm.public_key(c.id).await.unwrap(), c.public);
    assert_eq!(wrapped_public(&hsm, c.id).await.unwrap(), c.public.spki_der);
    let (_pkcs11, raw) = raw_session(&module, &label);
    destroy_behind_byokds_back(&raw, c.id);
    for n in 0..4u8 {
        make_key_pair(&raw, [0xE0 | n; 16], "byokd/h/other");
    }
    assert_not_found(hsm.public_key(c.id).await, "public key destroyed elsewhere");
    assert_not_found(
        wrapped_public(&hsm, c.id).await,
        "wrap of a key destroyed elsewhere",
    );
    assert_not_found(
        hsm.key_attributes(c.id).await,
        "attributes destroyed elsewhere",
    );

    // Restored with the same CKA_ID (as a vendor backup brings a key back): found anew, and the
    // wrap holds the restored key.
    make_key_pair(&raw, c.id.0, "byokd/h/c");
    let restored = hsm.public_key(c.id).await.unwrap();
    assert_ne!(restored, c.public, "the restored key is a new key pair");
    assert_eq!(wrapped_public(&hsm, c.id).await.unwrap(), restored.spki_der);
    assert!(hsm.key_attributes(c.id).await.unwrap().sensitive);
    hsm.shutdown().await.unwrap();
}

async fn requests_at_once_with_destroys_among_them(mut cfg: HsmConfig, pin: Pin) {
    cfg.sessions = 3;
    let (hsm, _) = Hsm::start(&cfg, pin).unwrap();
    let mut keys: Vec<(HsmKeyId, PublicKeyInfo)> = Vec::new();
    for k in 0..8 {
        let (group, key) = names("race", &format!("k{k}"));
        let g = hsm.generate(EC, &group, &key).await.unwrap();
        keys.push((g.id, g.public));
    }
    // Readers of every key on all sessions while every second key is destroyed.
    let mut tasks = Vec::new();
    for round in 0..6 {
        for (id, public) in keys.clone() {
            let hsm = hsm.clone();
            tasks.push(tokio::spawn(async move {
                match hsm.public_key(id).await {
                    Ok(read) => {
                        assert_eq!(read, public, "round {round}: another key's public half")
                    }
                    Err(HsmError::KeyNotFound { .. }) => {}
                    Err(e) => panic!("round {round}: {e}"),
                }
            }));
        }
        if round == 2 {
            for (id, _) in keys.iter().step_by(2) {
                let (hsm, id) = (hsm.clone(), *id);
                tasks.push(tokio::spawn(async move { hsm.destroy(id).await.unwrap() }));
            }
        }
    }
    for task in tasks {
        task.await.unwrap();
    }
    for (i, (id, public)) in keys.iter().enumerate() {
        let read = hsm.public_key(*id).await;
        if i % 2 == 0 {
            assert_not_found(read, "a destroyed key");
        } else {
            assert_eq!(&read.unwrap(), public);
        }
    }
    hsm.shutdown().await.unwrap();
}

#[test]
fn kept_handles_never_stand_for_another_object_on_softhsm() {
    common::softhsm::isolated(
        "kept_handles_never_stand_for_another_object_on_softhsm",
        |token| async move {
            kept_handles_never_stand_for_another_object(token.config(), token.pin()).await
        },
    );
}

#[test]
fn kept_handles_never_stand_for_another_object_on_kryoptic() {
    common::kryoptic::isolated(
        "kept_handles_never_stand_for_another_object_on_kryoptic",
        |token| async move {
            kept_handles_never_stand_for_another_object(token.config(), token.pin()).await
        },
    );
}

#[test]
fn requests_at_once_with_destroys_among_them_on_softhsm() {
    common::softhsm::isolated(
        "requests_at_once_with_destroys_among_them_on_softhsm",
        |token| async move {
            requests_at_once_with_destroys_among_them(token.config(), token.pin()).await
        },
    );
}

#[test]
fn requests_at_once_with_destroys_among_them_on_kryoptic() {
    common::kryoptic::isolated(
        "requests_at_once_with_destroys_among_them_on_kryoptic",
        |token| async move {
            requests_at_once_with_destroys_among_them(token.config(), token.pin()).await
        },
    );
}
