//! One certificate order, from the new order to the issued chain: each
//! pending authorization gets an answer to the challenge this server
//! prefers among those offered, the order is finalized with a fresh key's
//! signing request, and the chain is fetched.

use instant_acme::{
    Account, AuthorizationStatus, Identifier, NewOrder, Order, OrderStatus, RetryPolicy,
};
use rcgen::{CertificateParams, DistinguishedName, KeyPair};

use super::{
    challenge::{Answer, Responders},
    AcmeError,
};

/// How long an order may take to become ready, then to be issued:
/// instant-acme's polling, starting at a quarter second and doubling.
fn polling() -> RetryPolicy {
    RetryPolicy::new().timeout(std::time::Duration::from_secs(90))
}

/// Orders a certificate for `host` and returns it as PEM text: the chain,
/// then the private key.
pub async fn issue(
    account: &Account,
    host: &str,
    responders: &Responders,
) -> Result<String, AcmeError> {
    let identifiers = [Identifier::Dns(host.to_owned())];
    let mut order = account
        .new_order(&NewOrder::new(&identifiers))
        .await
        .map_err(AcmeError::at("creating the order"))?;
    // Held until the order is done: the validator may check at any time
    // until then, and more than once.
    let _answers = authorize(&mut order, host, responders).await?;
    let status = order
        .poll_ready(&polling())
        .await
        .map_err(AcmeError::at("waiting for validation"))?;
    if status != OrderStatus::Ready {
        return Err(AcmeError::Order(status));
    }
    // A new key for every certificate: a renewal does not keep using a
    // key that an earlier certificate exposed for its whole lifetime.
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(vec![host.to_owned()])?;
    params.distinguished_name = DistinguishedName::new();
    let csr = params.serialize_request(&key)?;
    order
        .finalize_csr(csr.der())
        .await
        .map_err(AcmeError::at("finalizing the order"))?;
    let chain = order
        .poll_certificate(&polling())
        .await
        .map_err(AcmeError::at("fetching the certificate"))?;
    Ok(format!("{}\n{}", chain.trim_end(), key.serialize_pem()))
}

/// Answers every pending authorization of `order` and tells the server
/// to validate it; the answers stay up while they are held.
async fn authorize(
    order: &mut Order,
    host: &str,
    responders: &Responders,
) -> Result<Vec<Answer>, AcmeError> {
    let mut answers = Vec::new();
    let mut authorizations = order.authorizations();
    while let Some(authorization) = authorizations.next().await {
        let mut authorization =
            authorization.map_err(AcmeError::at("fetching an authorization"))?;
        match authorization.status {
            AuthorizationStatus::Pending => {}
            // Validated for this account recently: nothing to answer.
            AuthorizationStatus::Valid => continue,
            other => return Err(AcmeError::Authorization(other)),
        }
        let kind = responders
            .preference()
            .into_iter()
            .find(|kind| authorization.challenges.iter().any(|c| c.r#type == *kind))
            .ok_or(AcmeError::NoChallenge)?;
        let mut challenge = authorization
            .challenge(kind.clone())
            .ok_or(AcmeError::NoChallenge)?;
        let answer = responders.answer(
            &kind,
            host,
            &challenge.token,
            &challenge.key_authorization(),
        )?;
        answers.push(answer);
        challenge
            .set_ready()
            .await
            .map_err(AcmeError::at("starting validation"))?;
    }
    Ok(answers)
}
