//! f64 fields that may hold NaN or infinities, in JSON: as a number when finite, else as the
//! string "NaN", "inf" or "-inf" (serde_json would write `null`, which reads back as an error).

use serde::{Deserialize, Deserializer, Serializer};

pub fn serialize<S: Serializer>(value: &f64, serializer: S) -> Result<S::Ok, S::Error> {
    if value.is_finite() {
        serializer.serialize_f64(*value)
    } else if value.is_nan() {
        serializer.serialize_str("NaN")
    } else if *value > 0.0 {
        serializer.serialize_str("inf")
    } else {
        serializer.serialize_str("-inf")
    }
}

pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Repr {
        Number(f64),
        Text(String),
    }
    match Repr::deserialize(deserializer)? {
        Repr::Number(v) => Ok(v),
        Repr::Text(t) => match t.as_str() {
            "NaN" => Ok(f64::NAN),
            "inf" => Ok(f64::INFINITY),
            "-inf" => Ok(f64::NEG_INFINITY),
            other => Err(serde::de::Error::custom(format!("{other:?} is not a number, \"NaN\", \"inf\" or \"-inf\""))),
        },
    }
}

/// A map of such values (held-out loss per domain).
pub mod map {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    struct Out<'a>(&'a f64);
    impl Serialize for Out<'_> {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            super::serialize(self.0, serializer)
        }
    }

    struct In(f64);
    impl<'de> Deserialize<'de> for In {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            super::deserialize(deserializer).map(In)
        }
    }

    pub fn serialize<S: Serializer>(map: &BTreeMap<String, f64>, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(map.iter().map(|(k, v)| (k, Out(v))))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<BTreeMap<String, f64>, D::Error> {
        let map = BTreeMap::<String, In>::deserialize(deserializer)?;
        Ok(map.into_iter().map(|(k, v)| (k, v.0)).collect())
    }
}

#[cfg(test)]
mod tests {
    #[derive(Debug, serde::Serialize, serde::Deserialize)]
    struct R {
        #[serde(with = "super")]
        x: f64,
    }

    #[test]
    fn non_finite_values_round_trip_and_finite_ones_stay_numbers() {
        for x in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 1.5, 0.1 + 0.2] {
            let text = serde_json::to_string(&R { x }).unwrap();
            let back: R = serde_json::from_str(&text).unwrap();
            assert!(back.x.to_bits() == x.to_bits() || (x.is_nan() && back.x.is_nan()), "{text}");
        }
        assert_eq!(serde_json::to_string(&R { x: 2.0 }).unwrap(), r#"{"x":2.0}"#);
        #[derive(serde::Serialize, serde::Deserialize)]
        struct M {
            #[serde(with = "super::map")]
            m: std::collections::BTreeMap<String, f64>,
        }
        let m = M { m: [("a".to_string(), f64::NAN), ("b".to_string(), 0.5)].into() };
        let text = serde_json::to_string(&m).unwrap();
        assert_eq!(text, r#"{"m":{"a":"NaN","b":0.5}}"#);
        let back: M = serde_json::from_str(&text).unwrap();
        assert!(back.m["a"].is_nan() && back.m["b"] == 0.5);
    }
}
