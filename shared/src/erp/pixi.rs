//! pixi* SOAP 1.1 ERP connector.
