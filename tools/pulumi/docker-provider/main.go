// Command pulumi-resource-docker: a Pulumi resource provider for Docker, bridged from
// kreuzwerker's Terraform provider with Pulumi's Terraform bridge.
//
// It serves the resource tokens and property names of pulumi-docker 5.x for the resources
// secure-kafka declares (Container, RemoteImage, Network, Volume), so the pulumi_docker
// Python SDK talks to it unchanged. Everything else of the Terraform provider is left out:
// nothing here needs it, and an unmapped resource cannot be declared by mistake.
package main

import (
	_ "embed"

	"github.com/pulumi/pulumi-terraform-bridge/v3/pkg/tfbridge"
	shimv2 "github.com/pulumi/pulumi-terraform-bridge/v3/pkg/tfshim/sdk-v2"
	"github.com/terraform-providers/terraform-provider-docker/internal/provider"
)

// version is the pulumi-docker release whose tokens this provider serves; the build sets it
// (tools/pulumi/build) to the version of the pulumi_docker SDK the project pins.
var version = "5.2.0"

// The package schema the engine asks for: only its name and version. The Python SDK carries
// its own types; the engine needs no more of the schema to run a program.
//
//go:embed schema.json
var schema []byte

func resource(name string) tfbridge.ResourceInfo {
	return tfbridge.ResourceInfo{Tok: tfbridge.MakeResource("docker", "index", name)}
}

func providerInfo() tfbridge.ProviderInfo {
	container := resource("Container")
	// Docker cannot rename a running container's replacement into place: delete first, as pulumi-docker does.
	container.DeleteBeforeReplace = true
	container.Fields = map[string]*tfbridge.SchemaInfo{
		// A list that is one command line, and a list named in the singular: pulumi-docker keeps both names.
		"command":           {Name: "command"},
		"networks_advanced": {Name: "networksAdvanced"},
	}
	image := resource("RemoteImage")
	image.Fields = map[string]*tfbridge.SchemaInfo{"name": {Name: "name"}}
	network := resource("Network")
	volume := resource("Volume")

	return tfbridge.ProviderInfo{
		P:       shimv2.NewProvider(provider.New(version)()),
		Name:    "docker",
		Version: version,
		Config: map[string]*tfbridge.SchemaInfo{
			"host": {Default: &tfbridge.DefaultInfo{Value: "unix:///var/run/docker.sock", EnvVars: []string{"DOCKER_HOST"}}},
		},
		Resources: map[string]*tfbridge.ResourceInfo{
			"docker_container": &container,
			"docker_image":     &image,
			"docker_network":   &network,
			"docker_volume":    &volume,
		},
	}
}

func main() {
	tfbridge.Main("docker", version, providerInfo(), schema)
}
