//! Error e-mails through the tenant's SMTP settings (lettre, rustls).
