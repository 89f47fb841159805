//! The email sink: plain-text mail through an SMTP relay (lettre over tokio and rustls), to the
//! user's verified contact only. The only sink that may carry a notification's secret.

use super::{Outgoing, SinkResult};
use crate::config::SmtpSinkSettings;
use keyplane_core::notification::mask_email;
use keyplane_core::Error;
use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use std::time::Duration;

pub struct SmtpSink {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl SmtpSink {
    pub fn new(s: &SmtpSinkSettings) -> Result<Self, Error> {
        let bad =
            |e: &dyn std::fmt::Display| Error::unavailable(format!("notifications.smtp: {e}"));
        let (builder, default_port) = match s.security.as_str() {
            "none" => (
                AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&s.host),
                25,
            ),
            "tls" => (
                AsyncSmtpTransport::<Tokio1Executor>::relay(&s.host).map_err(|e| bad(&e))?,
                465,
            ),
            _ => (
                AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&s.host)
                    .map_err(|e| bad(&e))?,
                587,
            ),
        };
        let mut builder = builder
            .port(if s.port == 0 { default_port } else { s.port })
            .timeout(Some(Duration::from_secs(s.timeout_secs.max(1))));
        if !s.username.is_empty() {
            let password = std::fs::read_to_string(&s.password_file)
                .map_err(|e| bad(&format!("password_file {}: {e}", s.password_file.display())))?;
            builder = builder.credentials(Credentials::new(
                s.username.clone(),
                password.trim_end_matches(['\r', '\n']).to_string(),
            ));
        }
        let from: Mailbox = s.from.parse().map_err(|e| bad(&e))?;
        Ok(SmtpSink {
            transport: builder.build(),
            from,
        })
    }

    pub async fn deliver(&self, out: &Outgoing<'_>) -> SinkResult {
        let Some(contact) = out.contact else {
            return SinkResult::Skipped("no contact".into());
        };
        let to: Mailbox = match contact.parse() {
            Ok(m) => m,
            Err(_) => return SinkResult::Skipped("contact not usable for email".into()),
        };
        let mut body = out.message.body.clone();
        if let Some(secret) = out.secret {
            body.push('\n');
            body.push_str(secret.expose());
            body.push('\n');
        }
        let email = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(out.message.subject.clone())
            .header(ContentType::TEXT_PLAIN)
            .body(body);
        let email = match email {
            Ok(e) => e,
            Err(e) => return SinkResult::Failed(format!("email: {e}")),
        };
        match self.transport.send(email).await {
            Ok(_) => SinkResult::Sent,
            Err(e) => {
                // A relay's answer may quote the recipient: it goes to logs and the outbox masked.
                let masked = mask_email(contact);
                let error = e.to_string().replace(contact, &masked);
                tracing::warn!(to = %masked, error = %error, "email not delivered");
                SinkResult::Failed(format!("email: {error}"))
            }
        }
    }
}
