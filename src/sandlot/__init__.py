"""sandlot: self-hosted sandboxes for AI agents."""
