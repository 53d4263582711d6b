-- The one embedding variant (model:backend tag) the marts read: see the macro.
{{ active_embedding_model() }}
