//! API keys and accounts: authentication until revocation, unique names,
//! per-key model limits and expiry.

use imagegate_testkit::ScratchDb;

#[tokio::test]
async fn keys_authenticate_until_revoked() {
    for s in ScratchDb::all().await {
        let db = &s.db;
        let admin = db.bootstrap_admin().await.unwrap().expect("first start creates the admin key");
        assert!(db.bootstrap_admin().await.unwrap().is_none(), "only once");
        let caller = db.authenticate(admin.secret.expose()).await.unwrap().unwrap();
        assert!(caller.is_admin);

        let acct = db.create_account("alice", "basic", false).await.unwrap();
        let key = db.create_key(&acct.id, "laptop").await.unwrap();
        let c = db.authenticate(key.secret.expose()).await.unwrap().unwrap();
        assert_eq!(c.account_id, acct.id);
        assert!(!c.is_admin);
        assert_eq!(db.list_keys(Some(&acct.id)).await.unwrap().len(), 1);
        assert_eq!(db.list_keys(None).await.unwrap().len(), 2);

        assert!(db.authenticate("sk-ig-wrong").await.unwrap().is_none());
        assert!(db.authenticate("Bearer nonsense").await.unwrap().is_none());
        assert!(db.revoke_key(&key.record.id).await.unwrap());
        assert!(!db.revoke_key(&key.record.id).await.unwrap());
        assert!(db.authenticate(key.secret.expose()).await.unwrap().is_none(), "revoked keys stop working on {}", s.url);
    }
}

#[tokio::test]
async fn account_names_are_unique() {
    for s in ScratchDb::all().await {
        s.db.create_account("bob", "free", false).await.unwrap();
        assert!(matches!(s.db.create_account("bob", "free", false).await, Err(imagegate_store::StoreError::Conflict(_))));
        assert_eq!(s.db.find_account("bob").await.unwrap().plan, "free");
    }
}

#[tokio::test]
async fn key_limits_restrict_models_and_expire() {
    for s in ScratchDb::all().await {
        let db = &s.db;
        let acct = db.create_account("carol", "basic", false).await.unwrap();
        let key = db.create_key(&acct.id, "narrow").await.unwrap();
        db.set_key_limits(&key.record.id, Some(&["FLUX.1-schnell".to_string()]), None).await.unwrap();
        let c = db.authenticate(key.secret.expose()).await.unwrap().unwrap();
        assert_eq!(c.allowed_models, Some(vec!["FLUX.1-schnell".to_string()]));
        db.set_key_limits(&key.record.id, None, Some(imagegate_store::now_ms() - 1)).await.unwrap();
        assert!(db.authenticate(key.secret.expose()).await.unwrap().is_none(), "expired keys stop working");
        assert!(db.set_key_limits("key_nope", None, None).await.is_err());
    }
}
