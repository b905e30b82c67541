//! The JSON Schema of a tool's arguments, built from its payload parameters' types.

/// A payload parameter of a tool: its type has a JSON Schema.
#[diagnostic::on_unimplemented(
    message = "the payload parameter type `{Self}` of a tool has no JSON Schema",
    label = "a tool's arguments are described to the model by their JSON Schema",
    note = "derive it: `#[derive(schemars::JsonSchema)]` on `{Self}`, and enable actguard's `tools` feature"
)]
pub trait ToolParam {
    #[doc(hidden)]
    #[cfg(feature = "tools")]
    fn schema(generator: &mut schemars::SchemaGenerator) -> serde_json::Value;
}

#[cfg(feature = "tools")]
impl<T: schemars::JsonSchema + ?Sized> ToolParam for T {
    fn schema(generator: &mut schemars::SchemaGenerator) -> serde_json::Value {
        generator.subschema_for::<T>().to_value()
    }
}

/// Builds the arguments' schema of a tool, one payload parameter at a time (the expansion of
/// `#[agent_action(tool)]` calls it).
pub struct ToolSchema {
    #[cfg(feature = "tools")]
    generator: schemars::SchemaGenerator,
    properties: serde_json::Map<String, serde_json::Value>,
    required: Vec<serde_json::Value>,
}

impl Default for ToolSchema {
    fn default() -> Self {
        ToolSchema::new()
    }
}

impl ToolSchema {
    /// An object schema with no property yet.
    pub fn new() -> Self {
        ToolSchema {
            #[cfg(feature = "tools")]
            generator: schemars::generate::SchemaSettings::draft2020_12().into_generator(),
            properties: serde_json::Map::new(),
            required: Vec::new(),
        }
    }

    /// Adds the parameter `name` of type `T`; a `required` one must be given (an `Option` need not).
    pub fn param<T: ToolParam + ?Sized>(&mut self, name: &str, required: bool) -> &mut Self {
        #[cfg(feature = "tools")]
        self.properties
            .insert(name.to_owned(), T::schema(&mut self.generator));
        #[cfg(not(feature = "tools"))]
        self.properties
            .insert(name.to_owned(), serde_json::Value::Bool(true));
        if required {
            self.required.push(name.into());
        }
        self
    }

    /// The schema: a draft 2020-12 object with the parameters as properties, no others allowed, and
    /// the definitions they refer to under `$defs`.
    pub fn finish(&mut self) -> serde_json::Value {
        #[cfg_attr(not(feature = "tools"), allow(unused_mut))]
        let mut root = serde_json::json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "properties": std::mem::take(&mut self.properties),
            "required": std::mem::take(&mut self.required),
            "additionalProperties": false,
        });
        #[cfg(feature = "tools")]
        {
            let defs = self.generator.take_definitions(true);
            if !defs.is_empty() {
                root["$defs"] = serde_json::Value::Object(defs);
            }
        }
        root
    }
}
