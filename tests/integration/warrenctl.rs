//! The real `warrenctl` binary against a running broker: rabbitmqctl 3.10's output (stdout and
//! stderr, byte for byte) and exit codes for the user, vhost and permission commands. The expected
//! texts were recorded from `rabbitmqctl` against the reference RabbitMQ 3.10 node.
use crate::common;
use common::*;

/// Runs warrenctl; (exit code, stdout, stderr).
async fn ctl(b: &TestBroker, args: &[&str]) -> (i32, String, String) {
    b.ctl(args).await.expect("in-process broker")
}

#[tokio::test]
async fn user_commands_print_like_rabbitmqctl() {
    let b = TestBroker::start().await;
    if b.is_external() {
        return; // compares warrenctl's own output
    }
    let ok = |out: &str| (0, out.to_string(), String::new());
    assert_eq!(
        ctl(&b, &["add_user", "zz_u1", "pw1"]).await,
        ok("Adding user \"zz_u1\" ...\nDone. Don't forget to grant the user permissions to some virtual hosts! See 'rabbitmqctl help set_permissions' to learn more.\n")
    );
    assert_eq!(
        ctl(&b, &["add_user", "zz_u1", "pw1"]).await,
        (70, "Adding user \"zz_u1\" ...\n".into(), "Error:\nUser \"zz_u1\" already exists\n".into())
    );
    let (code, out, err) = ctl(&b, &["add_user"]).await;
    assert_eq!((code, out.as_str()), (64, ""));
    assert!(err.starts_with("Error (argument validation): not enough arguments.\nArguments given:\n\tadd_user\n"), "{err}");
    // No password argument and nothing on stdin.
    assert_eq!(
        ctl(&b, &["add_user", "zz_u2"]).await,
        (65, "Adding user \"zz_u2\" ...\n".into(), "Error:\nPassword is not provided via argument or stdin\n".into())
    );
    assert_eq!(ctl(&b, &["authenticate_user", "zz_u1", "pw1"]).await, ok("Authenticating user \"zz_u1\" ...\nSuccess\n"));
    let bad = |u: &str| {
        (
            65,
            format!("Authenticating user \"{u}\" ...\n"),
            format!("Error:\nError: failed to authenticate user \"{u}\"\nuser '{u}' - invalid credentials\n"),
        )
    };
    assert_eq!(ctl(&b, &["authenticate_user", "zz_u1", "bad"]).await, bad("zz_u1"));
    assert_eq!(ctl(&b, &["authenticate_user", "zz_nobody", "bad"]).await, bad("zz_nobody"));
    assert_eq!(ctl(&b, &["change_password", "zz_u1", "pw2"]).await, ok("Changing password for user \"zz_u1\" ...\n"));
    assert_eq!(
        ctl(&b, &["change_password", "zz_nobody", "pw2"]).await,
        (67, "Changing password for user \"zz_nobody\" ...\n".into(), "Error:\nUser \"zz_nobody\" does not exist\n".into())
    );
    assert_eq!(ctl(&b, &["authenticate_user", "zz_u1", "pw2"]).await.0, 0);
    assert_eq!(ctl(&b, &["clear_password", "zz_u1"]).await, ok("Clearing password for user \"zz_u1\" ...\n"));
    assert_eq!(ctl(&b, &["authenticate_user", "zz_u1", "pw2"]).await, bad("zz_u1"));
    assert_eq!(
        ctl(&b, &["clear_password", "zz_nobody"]).await,
        (69, "Clearing password for user \"zz_nobody\" ...\n".into(), "Error:\n{:no_such_user, \"zz_nobody\"}\n".into())
    );
    assert_eq!(
        ctl(&b, &["set_user_tags", "zz_u1", "monitoring", "management"]).await,
        ok("Setting tags for user \"zz_u1\" to [monitoring, management] ...\n")
    );
    assert_eq!(
        ctl(&b, &["set_user_tags", "zz_nobody", "a"]).await,
        (67, "Setting tags for user \"zz_nobody\" to [a] ...\n".into(), "Error:\nUser \"zz_nobody\" does not exist\n".into())
    );
    assert_eq!(
        ctl(&b, &["list_users"]).await,
        ok("Listing users ...\nuser\ttags\nguest\t[administrator]\nzz_u1\t[monitoring, management]\n")
    );
    assert_eq!(ctl(&b, &["list_users", "-q"]).await, ok("user\ttags\nguest\t[administrator]\nzz_u1\t[monitoring, management]\n"));
    assert_eq!(ctl(&b, &["list_users", "-s"]).await, ok("guest\t[administrator]\nzz_u1\t[monitoring, management]\n"));
    assert_eq!(
        ctl(&b, &["list_users", "--formatter", "json"]).await,
        ok("[\n{\"user\":\"guest\",\"tags\":[\"administrator\"]}\n,{\"user\":\"zz_u1\",\"tags\":[\"monitoring\",\"management\"]}\n]\n")
    );
    let (code, _, err) = ctl(&b, &["list_users", "name"]).await;
    assert_eq!(code, 64);
    assert!(err.starts_with("Error (argument validation): too many arguments.\n"), "{err}");
    assert_eq!(ctl(&b, &["set_user_tags", "zz_u1"]).await, ok("Setting tags for user \"zz_u1\" to [] ...\n"));
    assert_eq!(ctl(&b, &["list_users", "-q"]).await, ok("user\ttags\nguest\t[administrator]\nzz_u1\t[]\n"));
    assert_eq!(ctl(&b, &["add_user", "-q", "zz_u4", "pw"]).await, ok(""));
    assert_eq!(ctl(&b, &["delete_user", "zz_u4"]).await, ok("Deleting user \"zz_u4\" ...\n"));
    assert_eq!(
        ctl(&b, &["delete_user", "zz_u4"]).await,
        (67, "Deleting user \"zz_u4\" ...\n".into(), "Error:\nUser \"zz_u4\" does not exist\n".into())
    );
}

#[tokio::test]
async fn vhost_and_permission_commands_print_like_rabbitmqctl() {
    let b = TestBroker::start().await;
    if b.is_external() {
        return;
    }
    let ok = |out: &str| (0, out.to_string(), String::new());
    assert_eq!(ctl(&b, &["add_user", "-q", "zz_u1", "pw"]).await.0, 0);
    assert_eq!(ctl(&b, &["add_vhost", "zz_v1"]).await, ok("Adding vhost \"zz_v1\" ...\n"));
    assert_eq!(ctl(&b, &["add_vhost", "zz_v1"]).await, ok("Adding vhost \"zz_v1\" ...\n"), "existing vhost: rc 0");
    assert_eq!(ctl(&b, &["list_vhosts"]).await, ok("Listing vhosts ...\nname\n/\nzz_v1\n"));
    let setting = "Setting permissions for user \"zz_u1\" in vhost \"zz_v1\" ...\n";
    assert_eq!(ctl(&b, &["set_permissions", "-p", "zz_v1", "zz_u1", "^q", "^x", ".*"]).await, ok(setting));
    let (code, out, err) = ctl(&b, &["set_permissions", "-p", "zz_v1", "zz_u1", "(", "^x", ".*"]).await;
    assert_eq!((code, out.as_str()), (69, setting));
    assert!(err.starts_with("Error:\n{:invalid_regexp, '(', {'"), "{err}");
    assert_eq!(
        ctl(&b, &["set_permissions", "-p", "zz_nov", "zz_u1", "^q", "^x", ".*"]).await,
        (69, "Setting permissions for user \"zz_u1\" in vhost \"zz_nov\" ...\n".into(), "Error:\nVirtual host zz_nov does not exist\n".into())
    );
    assert_eq!(
        ctl(&b, &["set_permissions", "-p", "zz_v1", "zz_nobody", "^q", "^x", ".*"]).await,
        (67, "Setting permissions for user \"zz_nobody\" in vhost \"zz_v1\" ...\n".into(), "Error:\nUser zz_nobody does not exist\n".into())
    );
    let (code, out, _) = ctl(&b, &["set_permissions", "-p", "zz_v1", "zz_u1", "^q", "^x"]).await;
    assert_eq!((code, out.as_str()), (64, ""));
    assert_eq!(
        ctl(&b, &["list_permissions", "-p", "zz_v1"]).await,
        ok("Listing permissions for vhost \"zz_v1\" ...\nuser\tconfigure\twrite\tread\nzz_u1\t^q\t^x\t.*\n")
    );
    assert_eq!(
        ctl(&b, &["list_permissions"]).await,
        ok("Listing permissions for vhost \"/\" ...\nuser\tconfigure\twrite\tread\nguest\t.*\t.*\t.*\n")
    );
    assert_eq!(
        ctl(&b, &["list_permissions", "--formatter", "json"]).await,
        ok("[\n{\"user\":\"guest\",\"configure\":\".*\",\"write\":\".*\",\"read\":\".*\"}\n]\n")
    );
    assert_eq!(
        ctl(&b, &["list_permissions", "-p", "zz_nov"]).await,
        (65, "Listing permissions for vhost \"zz_nov\" ...\n".into(), "Virtual host 'zz_nov' does not exist\n".into())
    );
    assert_eq!(
        ctl(&b, &["list_user_permissions", "zz_u1"]).await,
        ok("Listing permissions for user \"zz_u1\" ...\nvhost\tconfigure\twrite\tread\nzz_v1\t^q\t^x\t.*\n")
    );
    assert_eq!(
        ctl(&b, &["list_user_permissions", "zz_nobody"]).await,
        (69, "Listing permissions for user \"zz_nobody\" ...\n".into(), "Error:\n{:no_such_user, \"zz_nobody\"}\n".into())
    );
    let clearing = "Clearing permissions for user \"zz_u1\" in vhost \"zz_v1\" ...\n";
    assert_eq!(ctl(&b, &["clear_permissions", "-p", "zz_v1", "zz_u1"]).await, ok(clearing));
    assert_eq!(ctl(&b, &["clear_permissions", "-p", "zz_v1", "zz_u1"]).await, ok(clearing), "clearing twice is fine");
    assert_eq!(
        ctl(&b, &["clear_permissions", "-p", "zz_nov", "zz_u1"]).await,
        (69, "Clearing permissions for user \"zz_u1\" in vhost \"zz_nov\" ...\n".into(), "Error:\nVirtual host zz_nov does not exist\n".into())
    );
    assert_eq!(
        ctl(&b, &["clear_permissions", "-p", "zz_v1", "zz_nobody"]).await,
        (67, "Clearing permissions for user \"zz_nobody\" in vhost \"zz_v1\" ...\n".into(), "Error:\nUser zz_nobody does not exist\n".into())
    );
    // Empty listings are one blank line, as rabbitmqctl prints them; JSON gives [].
    assert_eq!(ctl(&b, &["list_user_permissions", "zz_u1"]).await, ok("Listing permissions for user \"zz_u1\" ...\n\n"));
    assert_eq!(ctl(&b, &["list_permissions", "-q", "-p", "zz_v1"]).await, ok("\n"));
    assert_eq!(ctl(&b, &["list_user_permissions", "zz_u1", "--formatter", "json"]).await, ok("[]\n"));
    assert_eq!(ctl(&b, &["delete_vhost", "zz_v1"]).await, ok("Deleting vhost \"zz_v1\" ...\n"));
    assert_eq!(
        ctl(&b, &["delete_vhost", "zz_v1"]).await,
        (65, "Deleting vhost \"zz_v1\" ...\n".into(), "Virtual host 'zz_v1' does not exist\n".into())
    );
    let (code, _, err) = ctl(&b, &["delete_vhost"]).await;
    assert_eq!(code, 64);
    assert!(err.starts_with("Error (argument validation): not enough arguments.\n"), "{err}");
    assert_eq!(ctl(&b, &["list_vhosts", "-q"]).await, ok("name\n/\n"));
}
