//! Paygate's KVP envelope: `key=value&…` plaintext with a `MAC` (HMAC-SHA256 with the merchant's
//! HMAC password), encrypted with Blowfish-ECB (the merchant's Blowfish password as the raw
//! key, zero padding to 8 bytes) and sent as `MerchantID`, `Len` (plaintext length before
//! padding) and `Data` (hex). Replies and notifies come back the same way; they are cut at
//! `Len` after decryption, never "unpadded".
//!
//! Wire facts and their sources: `../shared/reference/paygate.md` §1.2–§1.5 (developer.computop.com
//! "Hash MAC" page; spryker-eco/computop-api, FATCHIP library-computop and pretix as the public
//! implementations that agree). The MAC strings: request `PayID*TransID*MerchantID*Amount*Currency`,
//! response / notify `PayID*TransID*mid*Status*Code` (empty fields keep their `*`). MACs are
//! compared case-insensitively in constant time.
//!
//! The AES variant (§1.4, for accounts Computop switched to AES; FATCHIP library-computop
//! `Encryption.php` and plugin-magento2-computop `AES.php`): AES-CBC with the password bytes as
//! the key (16/24/32 bytes → AES-128/192/256), a random 16-byte IV, PKCS#7 padding, `Data` =
//! `hex(IV)-hex(ciphertext)`, `Len` still the plaintext length. A reader tells the two apart by
//! the `-` in `Data` ([`open`]) and cuts at `Len` either way.
//!
//! The ciphers and the MAC are RustCrypto's `blowfish` + `ecb`, `aes` + `cbc` and `hmac` +
//! `sha2`; `subtle` compares.

use blowfish::Blowfish;
use ecb::cipher::block_padding::{NoPadding, ZeroPadding};
use ecb::cipher::{BlockDecryptMut, BlockEncryptMut, KeyInit, KeyIvInit};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Why an envelope cannot be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// Blowfish takes 4 to 56 key bytes.
    #[error("the Blowfish password must be 4 to 56 bytes long")]
    BadKey,
    #[error("Data is not hex")]
    NotHex,
    #[error("Data is not a whole number of 8-byte blocks")]
    NotBlocks,
    #[error("Len {len} does not fit Data of {available} bytes")]
    BadLen { len: usize, available: usize },
    #[error("the decrypted plaintext is not ASCII")]
    NotAscii,
    /// AES takes a 16, 24 or 32 byte password.
    #[error("the AES password must be 16, 24 or 32 bytes long")]
    BadAesKey,
    #[error("AES Data is not IV-ciphertext")]
    NotAesData,
    #[error("no randomness for the AES IV")]
    NoRandom,
}

/// The cipher of an account's envelope.
pub use crate::config::Cipher;

/// Encrypts with the account's cipher: Blowfish ([`encrypt`]) or AES with a fresh random IV
/// ([`encrypt_aes`]).
pub fn seal(cipher: Cipher, key: &[u8], plaintext: &str) -> Result<(String, usize), EnvelopeError> {
    match cipher {
        Cipher::Blowfish => encrypt(key, plaintext),
        Cipher::Aes => {
            let mut iv = [0u8; 16];
            getrandom::fill(&mut iv).map_err(|_| EnvelopeError::NoRandom)?;
            encrypt_aes(key, &iv, plaintext)
        }
    }
}

/// Decrypts `data` cut at `len`: AES when `data` has the `IV-ciphertext` shape, else Blowfish.
pub fn open(key: &[u8], data: &str, len: usize) -> Result<String, EnvelopeError> {
    if data.contains('-') {
        decrypt_aes(key, data, len)
    } else {
        decrypt(key, data, len)
    }
}

/// AES-CBC with PKCS#7 padding: `Data` = `hex(iv)-hex(ciphertext)` (uppercase), and `Len`.
pub fn encrypt_aes(
    key: &[u8],
    iv: &[u8; 16],
    plaintext: &str,
) -> Result<(String, usize), EnvelopeError> {
    use cbc::cipher::block_padding::Pkcs7;
    let bytes = match key.len() {
        16 => cbc::Encryptor::<aes::Aes128>::new_from_slices(key, iv)
            .map_err(|_| EnvelopeError::BadAesKey)?
            .encrypt_padded_vec_mut::<Pkcs7>(plaintext.as_bytes()),
        24 => cbc::Encryptor::<aes::Aes192>::new_from_slices(key, iv)
            .map_err(|_| EnvelopeError::BadAesKey)?
            .encrypt_padded_vec_mut::<Pkcs7>(plaintext.as_bytes()),
        32 => cbc::Encryptor::<aes::Aes256>::new_from_slices(key, iv)
            .map_err(|_| EnvelopeError::BadAesKey)?
            .encrypt_padded_vec_mut::<Pkcs7>(plaintext.as_bytes()),
        _ => return Err(EnvelopeError::BadAesKey),
    };
    let data = format!("{}-{}", hex::encode_upper(iv), hex::encode_upper(bytes));
    Ok((data, plaintext.len()))
}

/// The plaintext of AES `Data` (`hex(iv)-hex(ciphertext)`, either case) cut at `len` (the
/// padding, PKCS#7 or zeros, is never interpreted).
pub fn decrypt_aes(key: &[u8], data: &str, len: usize) -> Result<String, EnvelopeError> {
    let (iv, body) = data
        .trim()
        .split_once('-')
        .ok_or(EnvelopeError::NotAesData)?;
    let iv = hex::decode(iv).map_err(|_| EnvelopeError::NotHex)?;
    let mut bytes = hex::decode(body).map_err(|_| EnvelopeError::NotHex)?;
    if iv.len() != 16 {
        return Err(EnvelopeError::NotAesData);
    }
    if bytes.is_empty() || bytes.len() % 16 != 0 {
        return Err(EnvelopeError::NotBlocks);
    }
    if len > bytes.len() {
        return Err(EnvelopeError::BadLen {
            len,
            available: bytes.len(),
        });
    }
    let plain = match key.len() {
        16 => cbc::Decryptor::<aes::Aes128>::new_from_slices(key, &iv)
            .map_err(|_| EnvelopeError::BadAesKey)?
            .decrypt_padded_mut::<NoPadding>(&mut bytes),
        24 => cbc::Decryptor::<aes::Aes192>::new_from_slices(key, &iv)
            .map_err(|_| EnvelopeError::BadAesKey)?
            .decrypt_padded_mut::<NoPadding>(&mut bytes),
        32 => cbc::Decryptor::<aes::Aes256>::new_from_slices(key, &iv)
            .map_err(|_| EnvelopeError::BadAesKey)?
            .decrypt_padded_mut::<NoPadding>(&mut bytes),
        _ => return Err(EnvelopeError::BadAesKey),
    }
    .map_err(|_| EnvelopeError::NotBlocks)?;
    let mut plain = plain.to_vec();
    plain.truncate(len);
    if !plain.is_ascii() {
        return Err(EnvelopeError::NotAscii);
    }
    String::from_utf8(plain).map_err(|_| EnvelopeError::NotAscii)
}

/// The ciphertext of `plaintext` as Paygate's `Data` (uppercase hex) and its `Len`.
pub fn encrypt(key: &[u8], plaintext: &str) -> Result<(String, usize), EnvelopeError> {
    let cipher =
        ecb::Encryptor::<Blowfish>::new_from_slice(key).map_err(|_| EnvelopeError::BadKey)?;
    let bytes = cipher.encrypt_padded_vec_mut::<ZeroPadding>(plaintext.as_bytes());
    Ok((hex::encode_upper(bytes), plaintext.len()))
}

/// The plaintext of `data` (hex, either case) cut at `len`.
pub fn decrypt(key: &[u8], data: &str, len: usize) -> Result<String, EnvelopeError> {
    let bytes = hex::decode(data.trim()).map_err(|_| EnvelopeError::NotHex)?;
    if bytes.is_empty() || bytes.len() % 8 != 0 {
        return Err(EnvelopeError::NotBlocks);
    }
    if len > bytes.len() {
        return Err(EnvelopeError::BadLen {
            len,
            available: bytes.len(),
        });
    }
    let cipher =
        ecb::Decryptor::<Blowfish>::new_from_slice(key).map_err(|_| EnvelopeError::BadKey)?;
    let mut plain = cipher
        .decrypt_padded_vec_mut::<NoPadding>(&bytes)
        .map_err(|_| EnvelopeError::NotBlocks)?;
    plain.truncate(len);
    if !plain.is_ascii() {
        return Err(EnvelopeError::NotAscii);
    }
    String::from_utf8(plain).map_err(|_| EnvelopeError::NotAscii)
}

/// HMAC-SHA256 of `message` with the HMAC password, uppercase hex.
pub fn mac(hmac_password: &[u8], message: &str) -> String {
    // HMAC takes a key of any length.
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(hmac_password).expect("any key length");
    m.update(message.as_bytes());
    hex::encode_upper(m.finalize().into_bytes())
}

/// The MAC message of a request: `PayID*TransID*MerchantID*Amount*Currency` (empty fields keep
/// their `*`: an initial payment has no PayID).
pub fn request_mac_message(
    pay_id: &str,
    trans_id: &str,
    merchant_id: &str,
    amount: &str,
    currency: &str,
) -> String {
    [pay_id, trans_id, merchant_id, amount, currency].join("*")
}

/// The MAC message of a response or notify: `PayID*TransID*mid*Status*Code`.
pub fn response_mac_message(
    pay_id: &str,
    trans_id: &str,
    mid: &str,
    status: &str,
    code: &str,
) -> String {
    [pay_id, trans_id, mid, status, code].join("*")
}

/// Whether `received` (hex, either case, trailing whitespace ignored) is the MAC of `message`;
/// compared in constant time.
pub fn mac_matches(hmac_password: &[u8], message: &str, received: &str) -> bool {
    let expected = mac(hmac_password, message);
    let received = received.trim_end().to_ascii_uppercase();
    expected.as_bytes().ct_eq(received.as_bytes()).into()
}

/// The `key=value` pairs of a decrypted plaintext, keys as sent (Paygate matches them
/// case-insensitively: look them up with [`field`]).
pub fn pairs(plaintext: &str) -> Vec<(&str, &str)> {
    plaintext
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
        .collect()
}

/// The value of `key` (case-insensitive), the first if repeated.
pub fn field<'a>(pairs: &[(&'a str, &'a str)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| *v)
}

#[cfg(test)]
mod tests {
    //! The public vectors P1–P3 and the derived D1/D2/D2b of reference paygate.md §4.
    use super::*;
    use sha2::Digest;

    #[test]
    fn paygate_p1_blowfish_ecb_zero_padding() {
        let (data, len) = encrypt(b"password", "plaintext").unwrap();
        assert_eq!(data, "14EC7A6DA0FBB3E50A84B47302443328");
        assert_eq!(len, 9);
        assert_eq!(
            decrypt(b"password", &data.to_lowercase(), 9).unwrap(),
            "plaintext"
        );
    }

    #[test]
    fn paygate_p1_negative_a_zero_padded_key_is_not_paygates_blowfish() {
        // OpenSSL's bf-ecb pads short keys to 16 bytes: the wrong cipher text
        let mut padded = b"password".to_vec();
        padded.resize(16, 0);
        let (data, _) = encrypt(&padded, "plaintext").unwrap();
        assert_eq!(data, "24FD2720350FB5072E653D133C52F7B8");
        assert_ne!(data, encrypt(b"password", "plaintext").unwrap().0);
    }

    #[test]
    fn paygate_d3_aes128_cbc_pkcs7_with_iv() {
        let iv: [u8; 16] = std::array::from_fn(|i| i as u8);
        let (data, len) = encrypt_aes(b"0123456789abcdef", &iv, "plaintext").unwrap();
        assert_eq!(
            data.to_lowercase(),
            "000102030405060708090a0b0c0d0e0f-292653fe66a932914e43882b838c4e54"
        );
        assert_eq!(len, 9);
        assert_eq!(open(b"0123456789abcdef", &data, 9).unwrap(), "plaintext");
        assert_eq!(
            decrypt_aes(b"0123456789abcdef", &data.to_lowercase(), 9).unwrap(),
            "plaintext"
        );
    }

    #[test]
    fn paygate_aes_round_trips_every_key_size_and_refuses_bad_input() {
        for key in [&b"0123456789abcdef"[..], &[7u8; 24][..], &[9u8; 32][..]] {
            let text = "MerchantID=m&PayID=abc&Amount=1234&Currency=EUR";
            let (data, len) = seal(Cipher::Aes, key, text).unwrap();
            assert_eq!(open(key, &data, len).unwrap(), text);
            // a fresh IV each time
            assert_ne!(seal(Cipher::Aes, key, text).unwrap().0, data);
        }
        assert_eq!(
            encrypt_aes(b"short", &[0; 16], "x"),
            Err(EnvelopeError::BadAesKey)
        );
        assert_eq!(
            decrypt_aes(b"0123456789abcdef", "00-11", 1),
            Err(EnvelopeError::NotAesData)
        );
        let (data, _) = seal(Cipher::Aes, b"0123456789abcdef", "plaintext").unwrap();
        assert!(matches!(
            decrypt_aes(b"0123456789abcdef", &data, 99),
            Err(EnvelopeError::BadLen { .. })
        ));
        // the wrong key gives bytes that are not the plaintext (or not ASCII)
        assert_ne!(
            decrypt_aes(b"fedcba9876543210", &data, 9).ok().as_deref(),
            Some("plaintext")
        );
    }

    #[test]
    fn paygate_p2_hmac_sha256_uppercase() {
        assert_eq!(
            mac(b"password", "value"),
            "18B40402BBF3FEED824E9F762B412F1108C4D678B2A067425B99963CD68B1D6A"
        );
    }

    #[test]
    fn paygate_p3_request_mac_of_an_initial_payment() {
        let msg = request_mac_message(
            "",
            "TID-4453732122167114558",
            "yourMerchantId",
            "1234",
            "EUR",
        );
        assert_eq!(msg, "*TID-4453732122167114558*yourMerchantId*1234*EUR");
        assert_eq!(
            mac(b"mySecret", &msg).to_lowercase(),
            "38ced807e293fc634a6c36ffaea7bd2687038d40615781918aef2de7bb9a9903"
        );
    }

    const D1: &str = "MerchantID=yourMerchantId&TransID=TID-4453732122167114558&Amount=1234&Currency=EUR&MAC=38CED807E293FC634A6C36FFAEA7BD2687038D40615781918AEF2DE7BB9A9903&URLSuccess=https://example.com/ok&URLFailure=https://example.com/fail&URLNotify=https://example.com/notify&Response=encrypt";
    const D2_MAC: &str = "36B79E693A7FA76A11D607870E6289CCDCFDF3514EA8F45E4B4D3808BC8FDB22";

    fn d2b() -> String {
        format!(
            "mid=yourMerchantId&PayID=a1b2c3d4e5f60718293a4b5c6d7e8f90&XID=0f1e2d3c4b5a69788796a5b4c3d2e1f0&TransID=TID-4453732122167114558&Status=AUTHORIZED&Description=success&Code=00000000&MAC={D2_MAC}"
        )
    }

    fn sha256_hex(s: &str) -> String {
        hex::encode(Sha256::digest(s.as_bytes()))
    }

    #[test]
    fn paygate_d1_request_envelope() {
        let (data, len) = encrypt(b"mySecret", D1).unwrap();
        assert_eq!(len, 275);
        assert_eq!(data.len(), 560);
        assert!(
            data.starts_with("C72AC119C7502DE2A14DF10CAC894691"),
            "{data}"
        );
        assert!(data.ends_with("FB63FDE8048DEA6F0A3C0B860103817D"), "{data}");
        assert!(sha256_hex(&data).starts_with("2b1a59b750cb38d7"));
        assert_eq!(decrypt(b"mySecret", &data, len).unwrap(), D1);
    }

    #[test]
    fn paygate_d2b_notify_decrypts_and_its_mac_verifies() {
        let (data, len) = encrypt(b"mySecret", &d2b()).unwrap();
        assert_eq!((len, data.len()), (247, 496));
        assert!(
            data.starts_with("53A5966766A70C48C72AC119C7502DE2"),
            "{data}"
        );
        assert!(data.ends_with("08F43B6753AD5108C825CA926A1150F4"), "{data}");
        assert!(sha256_hex(&data).starts_with("3e166303d2b29995"));

        let plain = decrypt(b"mySecret", &data, len).unwrap();
        let kv = pairs(&plain);
        let msg = response_mac_message(
            field(&kv, "payid").unwrap(),
            field(&kv, "TransID").unwrap(),
            field(&kv, "mid").unwrap(),
            field(&kv, "Status").unwrap(),
            field(&kv, "Code").unwrap(),
        );
        assert_eq!(mac(b"mySecret", &msg), D2_MAC);
        let received = field(&kv, "MAC").unwrap();
        assert!(mac_matches(b"mySecret", &msg, received));
        assert!(mac_matches(
            b"mySecret",
            &msg,
            &format!("{} \n", received.to_lowercase())
        ));
    }

    #[test]
    fn paygate_tampered_or_wrongly_keyed_envelopes_are_refused() {
        let (data, len) = encrypt(b"mySecret", &d2b()).unwrap();
        // a changed status no longer matches its MAC
        let msg = response_mac_message(
            "a1b2c3d4e5f60718293a4b5c6d7e8f90",
            "TID-4453732122167114558",
            "yourMerchantId",
            "OK",
            "00000000",
        );
        assert!(!mac_matches(b"mySecret", &msg, D2_MAC));
        assert!(!mac_matches(
            b"other",
            &response_mac_message(
                "a1b2c3d4e5f60718293a4b5c6d7e8f90",
                "TID-4453732122167114558",
                "yourMerchantId",
                "AUTHORIZED",
                "00000000"
            ),
            D2_MAC
        ));
        assert!(!mac_matches(b"mySecret", &msg, ""));
        // the wrong key decrypts to bytes that are not the plaintext (or not ASCII at all)
        assert_ne!(
            decrypt(b"notMySecret", &data, len).ok().as_deref(),
            Some(d2b().as_str())
        );
        assert_eq!(decrypt(b"mySecret", "zz", 1), Err(EnvelopeError::NotHex));
        assert_eq!(
            decrypt(b"mySecret", &data[..14], 7),
            Err(EnvelopeError::NotBlocks)
        );
        assert_eq!(
            decrypt(b"mySecret", &data, 497),
            Err(EnvelopeError::BadLen {
                len: 497,
                available: 248
            })
        );
        assert_eq!(decrypt(b"abc", &data, len), Err(EnvelopeError::BadKey));
        assert_eq!(decrypt(b"mySecret", "", 0), Err(EnvelopeError::NotBlocks));
    }

    #[test]
    fn paygate_fields_are_matched_case_insensitively() {
        let kv = pairs("payID=P1&Amount=100&&Empty=&flag");
        assert_eq!(field(&kv, "PayID"), Some("P1"));
        assert_eq!(field(&kv, "amount"), Some("100"));
        assert_eq!(field(&kv, "empty"), Some(""));
        assert_eq!(field(&kv, "flag"), Some(""));
        assert_eq!(field(&kv, "Code"), None);
    }
}
