//! The mail berth sends its clients: the welcome notice of a new site with its one-time
//! login link (Aegir e-mails it when a site is installed). Written here (pure, tested), sent
//! through an SMTP relay (`BERTH_SMTP_URL`) with `lettre`.

use chrono::{DateTime, Utc};
pub use lettre::message::Mailbox;
use lettre::message::Message;
use lettre::message::header::ContentType;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("mail address `{0}`: {1}")]
    Address(String, String),
    #[error("the relay URL (BERTH_SMTP_URL): {0}")]
    Relay(String),
    #[error("writing the message: {0}")]
    Message(String),
    #[error("sending through the relay: {0}")]
    Send(String),
}

/// What the welcome notice of a site says.
#[derive(Debug, Clone)]
pub struct Welcome<'a> {
    pub site: &'a str,
    /// The client's name, as the storefront knows it.
    pub client: &'a str,
    pub login_link: &'a str,
    pub link_expires_at: Option<DateTime<Utc>>,
}

pub fn mailbox(address: &str) -> Result<Mailbox, MailError> {
    address.parse().map_err(|e: lettre::address::AddressError| {
        MailError::Address(address.to_string(), e.to_string())
    })
}

/// The welcome notice, plain text: the site, the one-time login link, when it expires.
pub fn welcome(from: &Mailbox, to: &Mailbox, w: &Welcome) -> Result<Message, MailError> {
    let expires = w
        .link_expires_at
        .map(|t| format!("It works once, until {} UTC.", t.format("%Y-%m-%d %H:%M")))
        .unwrap_or_else(|| "It works once.".into());
    let body = format!(
        "Hello {client},\n\n\
         your site {site} is installed and serving: http://{site}/\n\n\
         Log in as its administrator with this one-time link, then set a password:\n\n\
         {link}\n\n\
         {expires} If it has expired, ask for a new one.\n",
        client = w.client,
        site = w.site,
        link = w.login_link,
    );
    Message::builder()
        .from(from.clone())
        .to(to.clone())
        .subject(format!("Your site {} is ready", w.site))
        .header(ContentType::TEXT_PLAIN)
        .body(body)
        .map_err(|e| MailError::Message(e.to_string()))
}

/// Sends through one relay: `smtp://host:port` (plain, for a relay on loopback),
/// `smtp://host:port?tls=required` (STARTTLS) or `smtps://host:port`, with
/// `user:password@` for authentication.
#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
}

impl Mailer {
    pub fn new(relay_url: &str) -> Result<Self, MailError> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(relay_url)
            // The error may quote the URL, credentials included: not repeated.
            .map_err(|_| MailError::Relay("not an smtp:// or smtps:// URL".into()))?
            .timeout(Some(std::time::Duration::from_secs(30)))
            .build();
        Ok(Self { transport })
    }

    pub async fn send(&self, message: Message) -> Result<(), MailError> {
        self.transport
            .send(message)
            .await
            .map(|_| ())
            .map_err(|e| MailError::Send(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_welcome_notice_names_the_site_and_carries_the_link() {
        let from = mailbox("berth <berth@host.example>").unwrap();
        let to = mailbox("buyer@example.com").unwrap();
        let link = "http://www.acme.example/user/reset/1/1796400000/abc/login";
        let m = welcome(
            &from,
            &to,
            &Welcome {
                site: "www.acme.example",
                client: "acme",
                login_link: link,
                link_expires_at: DateTime::from_timestamp(1_796_486_400, 0),
            },
        )
        .unwrap();
        // Lines longer than 76 characters go quoted-printable: soft breaks undone as a
        // reader does.
        let text = String::from_utf8(m.formatted())
            .unwrap()
            .replace("=\r\n", "")
            .replace("=3D", "=");
        assert!(
            text.contains("Subject: Your site www.acme.example is ready"),
            "{text}"
        );
        assert!(text.contains("To: buyer@example.com"), "{text}");
        assert!(text.contains(&format!("\n{link}\r\n")), "one line: {text}");
        assert!(text.contains("until 2026-12-05 16:00 UTC"), "{text}");
    }

    #[test]
    fn a_bad_address_or_relay_is_refused_saying_which() {
        let e = mailbox("not an address").unwrap_err();
        assert!(e.to_string().contains("not an address"), "{e}");
        let e = Mailer::new("http://user:s3cret@relay.example")
            .err()
            .unwrap();
        assert!(!e.to_string().contains("s3cret"), "{e}");
    }
}
