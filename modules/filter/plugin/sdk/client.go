package sdk

import (
	"context"
	"errors"
	"fmt"

	pb "github.com/pipestack/pipestack/modules/filter/plugin/proto"
)

// Client is the host's side of one plugin process's connection, dispensed
// by go-plugin (GRPCPlugin.GRPCClient). The host (modules/filter/plugin)
// configures the plugin, checks its health and opens Judge streams.
type Client struct {
	c       pb.FilterPluginClient
	version int
}

// NewClient wraps a generated client (tests, or a host not using
// go-plugin) that speaks protocol version (1 or 2).
func NewClient(c pb.FilterPluginClient, version int) *Client {
	return &Client{c: c, version: version}
}

// Version is the protocol version negotiated with the plugin: the layout
// of the records the host sends (RecordSizeV1 or RecordSize bytes).
func (c *Client) Version() int { return c.version }

// Configure sends the plugin its name and config (JSON) and returns what it
// declared; a refusal by the plugin is an error.
func (c *Client) Configure(ctx context.Context, name string, configJSON []byte, maxBatch int) (*pb.ConfigureResponse, error) {
	resp, err := c.c.Configure(ctx, &pb.ConfigureRequest{ProtocolVersion: uint32(c.version), Name: name, ConfigJson: configJSON, MaxBatch: uint32(maxBatch)})
	if err != nil {
		return nil, err
	}
	if resp.Error != "" {
		return resp, fmt.Errorf("the plugin refused its config: %s", resp.Error)
	}
	if !resp.Matcher && !resp.Target {
		return resp, errors.New("the plugin implements neither a matcher nor a target")
	}
	if resp.Data > pb.Data_DATA_PACKET {
		return resp, fmt.Errorf("the plugin asks for data kind %d, unknown to protocol version %d", resp.Data, c.version)
	}
	return resp, nil
}

// Health returns nil when the plugin says it serves.
func (c *Client) Health(ctx context.Context) error {
	resp, err := c.c.Health(ctx, &pb.HealthRequest{})
	if err != nil {
		return err
	}
	if !resp.Serving {
		return fmt.Errorf("not serving: %s", resp.Status)
	}
	return nil
}

// Judge opens a stream of batches; ctx's end closes it.
func (c *Client) Judge(ctx context.Context) (pb.FilterPlugin_JudgeClient, error) {
	return c.c.Judge(ctx)
}
