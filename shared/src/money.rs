//! Money: a `rust_decimal::Decimal` amount tied to an ISO 4217 currency and its exponent.
//!
//! Every amount paybridge handles goes through this type, so that mixing currencies or carrying
//! more decimals than the currency has (EUR 0.001, JPY 0.5) is an error at the point of entry,
//! never a silent rounding later. Conversion to a PSP's wire form (decimal major units, integer
//! minor units) happens at the connector edge only, via [`Money::to_minor`] / [`Money::from_minor`].

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Errors of money arithmetic and parsing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("unknown currency code {0:?}")]
    UnknownCurrency(String),
    #[error("{amount} has more decimals than {currency} allows ({exponent})")]
    TooManyDecimals {
        amount: Decimal,
        currency: Currency,
        exponent: u32,
    },
    #[error("currency mismatch: {0} vs {1}")]
    Mixed(Currency, Currency),
    #[error("amount out of range")]
    Overflow,
    #[error("invalid amount {0:?}")]
    Invalid(String),
}

/// ISO 4217 currencies paybridge knows, with their minor-unit exponent.
/// (Exponents from ISO 4217; the list covers the currencies Unzer and Computop settle in.)
const CURRENCIES: &[(&str, u32)] = &[
    ("EUR", 2),
    ("CHF", 2),
    ("GBP", 2),
    ("USD", 2),
    ("SEK", 2),
    ("NOK", 2),
    ("DKK", 2),
    ("PLN", 2),
    ("CZK", 2),
    ("HUF", 2),
    ("RON", 2),
    ("CAD", 2),
    ("AUD", 2),
    ("CNY", 2),
    ("JPY", 0),
    ("KRW", 0),
    ("ISK", 0),
    ("KWD", 3),
    ("BHD", 3),
    ("OMR", 3),
    ("JOD", 3),
    ("TND", 3),
];

/// A currency: its three-letter code and exponent. Copy, compares by code.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Currency {
    code: [u8; 3],
    exponent: u32,
}

impl Currency {
    pub const EUR: Currency = Currency {
        code: *b"EUR",
        exponent: 2,
    };
    pub const JPY: Currency = Currency {
        code: *b"JPY",
        exponent: 0,
    };
    pub const KWD: Currency = Currency {
        code: *b"KWD",
        exponent: 3,
    };

    /// Looks a code up (case-sensitive, as ISO writes it).
    pub fn from_code(code: &str) -> Result<Currency, MoneyError> {
        CURRENCIES
            .iter()
            .find(|(c, _)| *c == code)
            .map(|(c, e)| Currency {
                code: c.as_bytes().try_into().expect("three letters"),
                exponent: *e,
            })
            .ok_or_else(|| MoneyError::UnknownCurrency(code.to_string()))
    }

    pub fn code(&self) -> &str {
        std::str::from_utf8(&self.code).expect("ascii code")
    }

    pub fn exponent(&self) -> u32 {
        self.exponent
    }

    /// The smallest unit as a decimal (EUR 0.01, JPY 1, KWD 0.001).
    pub fn minor_unit(&self) -> Decimal {
        Decimal::new(1, self.exponent)
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl Serialize for Currency {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.code())
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Currency::from_code(&s).map_err(serde::de::Error::custom)
    }
}

/// An amount in a currency. Invariant: `amount.scale() <= currency.exponent()` after
/// normalisation, so every `Money` is a whole number of minor units.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "MoneyRepr", into = "MoneyRepr")]
pub struct Money {
    amount: Decimal,
    currency: Currency,
}

#[derive(Serialize, Deserialize)]
struct MoneyRepr {
    amount: Decimal,
    currency: Currency,
}

impl TryFrom<MoneyRepr> for Money {
    type Error = MoneyError;
    fn try_from(r: MoneyRepr) -> Result<Self, Self::Error> {
        Money::new(r.amount, r.currency)
    }
}

impl From<Money> for MoneyRepr {
    fn from(m: Money) -> Self {
        MoneyRepr {
            amount: m.amount,
            currency: m.currency,
        }
    }
}

impl Money {
    /// An exact amount; rejects more decimals than the currency has (after dropping trailing zeros).
    pub fn new(amount: Decimal, currency: Currency) -> Result<Money, MoneyError> {
        let norm = amount.normalize();
        if norm.scale() > currency.exponent {
            return Err(MoneyError::TooManyDecimals {
                amount,
                currency,
                exponent: currency.exponent,
            });
        }
        let mut amount = norm;
        amount.rescale(currency.exponent);
        Ok(Money { amount, currency })
    }

    /// Parses a decimal string such as `"12.34"`.
    pub fn parse(amount: &str, currency: Currency) -> Result<Money, MoneyError> {
        Money::new(parse_decimal(amount)?, currency)
    }

    pub fn zero(currency: Currency) -> Money {
        Money::from_minor(0, currency)
    }

    /// From an integer count of minor units (Paygate's wire form).
    pub fn from_minor(minor: i64, currency: Currency) -> Money {
        Money {
            amount: Decimal::new(minor, currency.exponent),
            currency,
        }
    }

    /// The integer count of minor units. Exact by the type's invariant.
    pub fn to_minor(&self) -> Result<i64, MoneyError> {
        let scaled = self
            .amount
            .checked_mul(Decimal::from(10i64.pow(self.currency.exponent)))
            .ok_or(MoneyError::Overflow)?;
        i64::try_from(scaled.trunc()).map_err(|_| MoneyError::Overflow)
    }

    pub fn amount(&self) -> Decimal {
        self.amount
    }

    pub fn currency(&self) -> Currency {
        self.currency
    }

    pub fn is_zero(&self) -> bool {
        self.amount.is_zero()
    }

    pub fn is_positive(&self) -> bool {
        self.amount > Decimal::ZERO
    }

    pub fn is_negative(&self) -> bool {
        self.amount < Decimal::ZERO
    }

    fn same(&self, other: &Money) -> Result<(), MoneyError> {
        if self.currency != other.currency {
            return Err(MoneyError::Mixed(self.currency, other.currency));
        }
        Ok(())
    }

    pub fn checked_add(&self, other: Money) -> Result<Money, MoneyError> {
        self.same(&other)?;
        let amount = self
            .amount
            .checked_add(other.amount)
            .ok_or(MoneyError::Overflow)?;
        Ok(Money {
            amount,
            currency: self.currency,
        })
    }

    pub fn checked_sub(&self, other: Money) -> Result<Money, MoneyError> {
        self.same(&other)?;
        let amount = self
            .amount
            .checked_sub(other.amount)
            .ok_or(MoneyError::Overflow)?;
        Ok(Money {
            amount,
            currency: self.currency,
        })
    }

    /// `self - other`, floored at zero.
    pub fn saturating_sub(&self, other: Money) -> Result<Money, MoneyError> {
        let d = self.checked_sub(other)?;
        Ok(if d.is_negative() {
            Money::zero(self.currency)
        } else {
            d
        })
    }

    pub fn min(&self, other: Money) -> Result<Money, MoneyError> {
        self.same(&other)?;
        Ok(if self.amount <= other.amount {
            *self
        } else {
            other
        })
    }

    /// Compares within the currency; errors on mixed currencies.
    pub fn cmp_to(&self, other: &Money) -> Result<std::cmp::Ordering, MoneyError> {
        self.same(other)?;
        Ok(self.amount.cmp(&other.amount))
    }

    /// Sums amounts of one currency; an empty sum is zero in `currency`.
    pub fn sum<'a>(
        currency: Currency,
        items: impl IntoIterator<Item = &'a Money>,
    ) -> Result<Money, MoneyError> {
        items
            .into_iter()
            .try_fold(Money::zero(currency), |acc, m| acc.checked_add(*m))
    }

    /// `|self - other|` in minor units ≤ `tolerance_minor`.
    pub fn within(&self, other: &Money, tolerance_minor: u32) -> Result<bool, MoneyError> {
        let diff = self.checked_sub(*other)?.amount.abs();
        Ok(diff <= Decimal::new(i64::from(tolerance_minor), self.currency.exponent))
    }

    /// `self ≤ other + tolerance` (minor units).
    pub fn le_with_tolerance(
        &self,
        other: &Money,
        tolerance_minor: u32,
    ) -> Result<bool, MoneyError> {
        self.same(other)?;
        let tol = Money::from_minor(i64::from(tolerance_minor), self.currency);
        Ok(self.amount <= other.checked_add(tol)?.amount)
    }
}

/// Parses a plain decimal exactly: optional sign, digits, at most one `.`, at most 29 significant
/// digits, and only values `Decimal` holds exactly; no
/// `_`, exponent or rounding (`rust_decimal`'s `from_str` would round past 28 digits and skip
/// `_`). Surrounding white space is ignored.
pub fn parse_decimal(text: &str) -> Result<Decimal, MoneyError> {
    let invalid = || MoneyError::Invalid(text.chars().take(40).collect());
    let t = text.trim();
    let body = t.strip_prefix(['-', '+']).unwrap_or(t);
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    // Significant digits: leading zeros of the integer part and trailing zeros of the fraction
    // carry no precision.
    let digits = int.trim_start_matches('0').len() + frac.trim_end_matches('0').len();
    if (int.is_empty() && frac.is_empty())
        || digits > 29
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
        || (body.contains('.') && frac.is_empty())
    {
        return Err(invalid());
    }
    let d = Decimal::from_str(t).map_err(|_| invalid())?;
    // Exact or nothing: the parsed value must print as the input's significant digits.
    let int_sig = int.trim_start_matches('0');
    let frac_sig = frac.trim_end_matches('0');
    let mut want = if int_sig.is_empty() {
        "0".to_string()
    } else {
        int_sig.to_string()
    };
    if !frac_sig.is_empty() {
        want = format!("{want}.{frac_sig}");
    }
    if d.abs().normalize().to_string() != want {
        return Err(invalid());
    }
    Ok(d)
}

impl fmt::Debug for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.amount, self.currency)
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.amount, self.currency)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    #[test]
    fn exponents_and_minor_units() {
        let eur = Currency::from_code("EUR").unwrap();
        let m = Money::new(dec!(12.3), eur).unwrap();
        assert_eq!(m.to_minor().unwrap(), 1230);
        assert_eq!(m.to_string(), "12.30 EUR");
        let jpy = Currency::from_code("JPY").unwrap();
        assert_eq!(Money::from_minor(500, jpy).amount(), dec!(500));
        let kwd = Currency::from_code("KWD").unwrap();
        assert_eq!(
            Money::new(dec!(1.234), kwd).unwrap().to_minor().unwrap(),
            1234
        );
    }

    #[test]
    fn rejects_too_many_decimals_and_unknown_currency() {
        assert!(matches!(
            Money::new(dec!(0.001), Currency::EUR),
            Err(MoneyError::TooManyDecimals { .. })
        ));
        assert!(Money::new(dec!(0.5), Currency::JPY).is_err());
        // trailing zeros are not extra precision
        assert!(Money::new(dec!(1.2000), Currency::EUR).is_ok());
        assert!(matches!(
            Currency::from_code("XXX"),
            Err(MoneyError::UnknownCurrency(_))
        ));
        assert!(Money::parse("abc", Currency::EUR).is_err());
    }

    #[test]
    fn rejects_mixed_currencies() {
        let a = Money::from_minor(100, Currency::EUR);
        let b = Money::from_minor(100, Currency::JPY);
        assert_eq!(
            a.checked_add(b),
            Err(MoneyError::Mixed(Currency::EUR, Currency::JPY))
        );
        assert!(a.within(&b, 5).is_err());
    }

    #[test]
    fn tolerance() {
        let a = Money::parse("100.00", Currency::EUR).unwrap();
        let b = Money::parse("100.02", Currency::EUR).unwrap();
        assert!(a.within(&b, 2).unwrap());
        assert!(!a.within(&b, 1).unwrap());
        assert!(b.le_with_tolerance(&a, 2).unwrap());
        assert!(!b.le_with_tolerance(&a, 1).unwrap());
    }

    #[test]
    fn serde_roundtrip_validates() {
        let m = Money::parse("9.99", Currency::EUR).unwrap();
        let s = serde_json::to_string(&m).unwrap();
        assert_eq!(s, r#"{"amount":"9.99","currency":"EUR"}"#);
        assert_eq!(serde_json::from_str::<Money>(&s).unwrap(), m);
        assert!(serde_json::from_str::<Money>(r#"{"amount":"9.999","currency":"EUR"}"#).is_err());
    }
}
