package attest

// Equivocates reports whether two statements prove their builder
// equivocated: the same builder key signed two successful builds of the
// same recipe with different artifact sets. Failed or unreproducible
// results never equivocate (a build may fail once and succeed later, and
// "unreproducible" is an honest report of differing outputs). Callers keep
// both signed envelopes as the proof (see docs/ATTESTATION.md).
func Equivocates(a, b *Statement) bool {
	return a != nil && b != nil &&
		a.Builder == b.Builder && a.RecipeID == b.RecipeID &&
		a.Result == ResultSuccess && b.Result == ResultSuccess &&
		a.ArtifactKey() != b.ArtifactKey()
}
