//! Methods with `&self`, `#[dep]` parameters, field paths through `self`, tuple indices, generics.

#![deny(warnings)]

use std::sync::Arc;

use actguard::{Classify, Run, agent_action};
use serde::{Deserialize, Serialize};

#[derive(Debug, Classify)]
pub enum ApiError {
    #[classify(transient)]
    Unavailable,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("unavailable")
    }
}

pub struct HttpClient;

#[derive(Serialize, Deserialize)]
pub struct Shipment {
    pub order: (String, u32),
    pub lines: Vec<String>,
}

pub struct Shipper {
    tenant: String,
}

impl Shipper {
    #[agent_action(key = "ship:{self.tenant}:{shipment.order.0}:{shipment.order.1}")]
    /// Ships one order; doc comments and attributes stay on the function.
    #[allow(clippy::needless_lifetimes)]
    pub async fn ship<'a>(
        &self,
        run: &'a Run,
        shipment: &Shipment,
        #[dep] client: &HttpClient,
        #[dep] shared: Arc<HttpClient>,
    ) -> Result<u32, ApiError> {
        let _ = (run.attempt().number(), client, &shared, &self.tenant);
        Ok(shipment.lines.len() as u32)
    }

    #[agent_action(effect = read)]
    pub async fn status(&self, run: &Run, order: String) -> Result<Option<String>, ApiError> {
        let _ = run;
        Ok(Some(order.clone()))
    }

    #[agent_action(key = "count:{n}")]
    async fn count(&mut self, run: &actguard::Run, mut n: u64) -> Result<u64, ApiError> {
        let _ = run;
        n += 1;
        Ok(n)
    }

    #[agent_action(effect = destructive, key = "cancel:{order}", compensate = Self::reship)]
    pub async fn cancel(&self, run: &Run, order: u64) -> Result<(), ApiError> {
        let _ = (run, order);
        Ok(())
    }

    #[agent_action(key = "reship:{order}")]
    pub async fn reship(&self, run: &Run, order: u64) -> Result<(), ApiError> {
        let _ = (run, order);
        Ok(())
    }

    /// Never used by `main`: a guarded action that no one calls must not warn more than a plain one.
    #[allow(dead_code)]
    #[agent_action(key = "unused:{order}")]
    async fn unused(
        &self,
        run: &Run,
        order: u64,
        #[dep] client: &HttpClient,
    ) -> Result<(), ApiError> {
        let _ = client;
        Ok(())
    }
}

#[agent_action(key = "generic:{id}")]
pub async fn generic<T>(run: &Run, id: u64, value: T) -> Result<T, ApiError>
where
    T: Serialize + serde::de::DeserializeOwned + Clone,
{
    let _ = (run, id);
    Ok(value.clone())
}

#[agent_action(key = "escaped:{{literal}}:{id}")]
async fn braces(run: &Run, id: uuid_like::Id) -> Result<(), ApiError> {
    let _ = run;
    if id.0 == 0 {
        return Err(ApiError::Unavailable);
    }
    Ok(())
}

mod uuid_like {
    #[derive(serde::Serialize, serde::Deserialize)]
    pub struct Id(pub u64);

    impl actguard::KeyPart for Id {
        fn write_key_part(&self, out: &mut String) {
            self.0.write_key_part(out)
        }
    }
}

fn main() {
    let _ = Shipper {
        tenant: String::new(),
    };
}
